"""inpaint_tui.cli.tables, the one owner of CLI tables that fit the terminal: what the boxed
detail tables (`runs show`, `compare`, sweeps, samples, workers, techniques, models) need from
it, checked on the table Rich prints rather than on the widths `fit` computes."""

from __future__ import annotations

import pytest


def _render(columns, width: int, **options):
    from rich.console import Console

    from inpaint_tui.cli.tables import print_table

    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        fitted = print_table(console, columns, **options)
    return fitted, captured.get()


def _check(text: str, width: int) -> list[str]:
    from rich.cells import cell_len

    lines = text.splitlines()
    assert all(cell_len(line) <= width for line in lines), text
    assert "…" not in text, text
    return lines


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_a_boxed_table_is_as_wide_as_fit_says_and_cuts_nothing(width):
    from inpaint_tui.cli.tables import Column, from_rows

    rows = [[i, f"sample-{i}", "done", f"0.{i}234", f"/data/runs/1/{i:03d}-a-long-file-name.png"] for i in range(3)]
    columns = from_rows([Column("#", "#", [], justify="right"), Column("name", "name", []),
                         Column("status", "status", []), Column("bg_mse", "bg_mse", [], justify="right"),
                         Column("path", "output path", [], wrap=True, fold=True, priority=1)], rows)
    fitted, text = _render(columns, width, boxed=True, say_dropped=False)
    lines = _check(text, width)
    from rich.cells import cell_len

    assert max(cell_len(line) for line in lines) == fitted.width
    for row in rows:  # every number whole, on its row, between the box's bars
        line = next(line for line in lines if f" {row[1]} " in line)
        assert [cell.strip() for cell in line.split("│")[1:5]] == [str(row[0]), row[1], row[2], row[3]]
    if width == 200:
        assert not fitted.dropped and "/data/runs/1/000-a-long-file-name.png" in text


def test_a_folding_column_folds_rather_than_being_dropped_and_says_nothing_when_asked():
    from inpaint_tui.cli.tables import Column, from_rows

    hub_id = "stabilityai/stable-diffusion-2-inpainting (not cached)"
    columns = from_rows([Column("preset", "preset", []), Column("unet", "inpaint UNet", [], wrap=True, fold=True),
                         Column("description", "description", [], wrap=True, fold=True, priority=1, ratio=2)],
                        [["sd2", hub_id, "Stable Diffusion 2 inpainting + SD 2.1 base for text-to-image"]])
    fitted, text = _render(columns, 50, boxed=True, say_dropped=False)
    _check(text, 50)
    assert not fitted.dropped  # both free-text columns folded into the room
    pieces = [line.split("│")[2].strip() for line in text.splitlines() if line.startswith("│")]
    assert len(pieces) > 1 and "".join(pieces).replace(" ", "") == hub_id.replace(" ", "")  # folded, nothing lost
    assert "hidden at" not in text


def test_the_room_left_is_shared_by_ratio_and_titles_may_carry_markup():
    from rich.text import Text

    from inpaint_tui.cli.tables import Column, from_rows

    words = " ".join(f"word{i}" for i in range(40))
    columns = from_rows([Column("name", "name", []), Column("range", "range", [], wrap=True),
                         Column("help", "help", [], wrap=True, ratio=3)], [["strength", words, words]])
    fitted, text = _render(columns, 80, boxed=True, title=Text.from_markup("[bold]vanilla[/] — a title"))
    _check(text, 80)
    assert text.splitlines()[0] == "vanilla — a title"
    range_, help_ = (column.width() for column in fitted.columns[1:])
    assert help_ > 2 * range_  # about three times, less the words kept whole
