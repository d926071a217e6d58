"""The Textual face: `inpaint-tui` with no command. Never imports torch: generation runs in
worker processes and the app follows it through the store."""

from __future__ import annotations

IMAGE_PROTOCOLS = ("auto", "kitty", "sixel", "halfcell", "unicode")


def run_tui(db: str | None, data_dir: str | None, *, image_protocol: str = "auto", start_screen: str | None = None,
            judging: tuple[int, str] | None = None) -> int:
    """Open the app on a database; returns the exit code. With `judging` (study id, rater):
    a judging session alone (JudgeApp), nothing else of the store within reach."""
    from inpaint_tui.store import Store
    from inpaint_tui.tui.images import image_widget_class

    # textual-image asks the terminal for its cell size at import: before Textual takes over.
    image_class = image_widget_class(image_protocol)
    store = Store(db, data_dir=data_dir)
    if judging is not None:
        from inpaint_tui.tui.app import JudgeApp

        app = JudgeApp(store, *judging, image_class=image_class)
    else:
        from inpaint_tui.tui.app import InpaintApp

        app = InpaintApp(store, image_class=image_class, start_screen=start_screen)
    app.run()
    return app.return_code or 0
