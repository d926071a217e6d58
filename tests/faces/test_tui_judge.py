"""The judging screen driven with Textual's Pilot at 80×24: a whole session (answers, a skip,
undo, leaving and resuming until nothing is left), blindness checked on the rendered screen,
and the mask outline against OpenCV's morphological gradient."""

import sqlite3

import numpy as np
import pytest
from PIL import Image
from textual_image.widget import HalfcellImage
from tui_helpers import assert_readable, screen_text, until

from engine.techniques import get_technique, technique_names
from inpaint_tui.jobs.judging import open_study
from inpaint_tui.tui.app import JudgeApp
from inpaint_tui.tui.images import MASK_TINT, with_mask_outline
from inpaint_tui.tui.screens.judge import JudgeScreen


def _screen(app) -> JudgeScreen:
    return next(s for s in app.screen_stack if isinstance(s, JudgeScreen))


async def _ready(pilot, *, images: bool = True) -> JudgeScreen:
    """Wait until the screen shows a trial (or says nothing is left) and takes keys."""
    await until(pilot, lambda: any(isinstance(s, JudgeScreen) for s in pilot.app.screen_stack), "the judging screen")
    screen = _screen(pilot.app)
    await until(pilot, lambda: not screen.busy, "the trial shown")
    if images and screen.session.current is not None:
        await until(pilot, lambda: len(screen.query("ImageStrip HalfcellImage")) == 3, "three images")
    await pilot.pause(0.1)
    return screen


async def _answer(pilot, key: str, store, study_id: int, expected_answers: int) -> None:
    await pilot.press(key)
    await until(pilot, lambda: len(store.judgements(study_id)) == expected_answers, f"{expected_answers} answers")
    await _ready(pilot)


async def test_a_whole_session_with_skip_undo_leave_and_resume(tui_store):
    store = tui_store
    vanilla, blended, tdpaint = store.ids["finished"]
    study, _ = open_study(store, [vanilla, blended, tdpaint])
    app = JudgeApp(store, study.id, "alice", image_class=HalfcellImage)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _ready(pilot)
        assert_readable(app)
        text = "\n".join(screen_text(app))
        assert study.question in text and "prompt:" in text and "yours 0 · left for you 18 · study 0/18" in text
        first = screen.session.current.trial
        await _answer(pilot, "1", store, study.id, 1)
        await _answer(pilot, "right", store, study.id, 2)
        await _answer(pilot, "t", store, study.id, 3)
        skipped = screen.session.current.trial
        await _answer(pilot, "s", store, study.id, 4)
        assert "skipped" in "\n".join(screen_text(app))
        await pilot.press("u")
        await until(pilot, lambda: len(store.judgements(study.id)) == 3, "the skip taken back")
        await _ready(pilot)
        assert screen.session.current.trial == skipped, "the answer taken back is asked again"
        assert "took back your last answer" in "\n".join(screen_text(app))
        await _answer(pilot, "2", store, study.id, 4)
        assert "study 4/18" in "\n".join(screen_text(app))
        await pilot.press("escape")
        await until(pilot, lambda: not app.is_running, "the app closed")
    assert app.answers == 4
    answers = store.judgements(study.id)
    assert [a.outcome for a in answers] == ["left", "right", "tie", "right"]
    assert answers[0].trial_id == first.id and answers[3].trial_id == skipped.id
    assert all(a.rater == "alice" and a.shown_at <= a.answered_at and a.seconds >= 0 for a in answers)

    resumed = JudgeApp(store, study.id, "alice", image_class=HalfcellImage)
    async with resumed.run_test(size=(80, 24)) as pilot:
        screen = await _ready(pilot)
        assert "yours 4 · left for you 14 · study 4/18" in "\n".join(screen_text(resumed))
        for count in range(5, 19):
            assert screen.session.current.trial.id not in {a.trial_id for a in answers}
            await _answer(pilot, "1" if count % 2 else "2", store, study.id, count)
        assert screen.session.current is None
        text = "\n".join(screen_text(resumed))
        assert "nothing left for you to judge" in text and "study 18/18" in text
        await pilot.press("q")
        await until(pilot, lambda: not resumed.is_running, "the app closed")
    trials = {a.trial_id for a in store.judgements(study.id)}
    assert len(trials) == 18 == len(store.judgements(study.id))


def _renumber_runs(store, new_ids: dict[int, int]) -> None:
    """Give runs ids no other number on the screen could be mistaken for."""
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as connection:
        connection.execute("PRAGMA foreign_keys = OFF")
        for old, new in new_ids.items():
            for table, column in (("run", "id"), ("run_sample", "run_id"), ("metric", "run_id"),
                                  ("run_metric", "run_id"), ("sweep_run", "run_id"), ("run_progress", "run_id")):
                connection.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))


async def test_the_screen_never_names_a_run_a_technique_or_a_parameter(tui_store):
    store = tui_store
    old = store.ids["finished"]
    ids = [7341, 7342, 7343]
    _renumber_runs(store, dict(zip(old, ids)))
    study, _ = open_study(store, ids)
    runs = store.runs(ids)
    forbidden = set(map(str, ids)) | set(technique_names()) | {run.model for run in runs} | {"run", "seed"}
    forbidden |= {name for run in runs for name in get_technique(run.technique).schema.defaults()}
    forbidden |= {str(value) for run in runs for value in run.params.values() if len(str(value)) > 2}
    app = JudgeApp(store, study.id, "alice", image_class=HalfcellImage)
    async with app.run_test(size=(120, 40)) as pilot:
        await _ready(pilot)
        for index in range(study.trials):
            screen_words = "\n".join(screen_text(app))
            leaked = sorted(word for word in forbidden if word in screen_words)
            assert not leaked, f"trial {index}: {leaked} on the judging screen"
            await _answer(pilot, "123"[index % 3], store, study.id, index + 1)
        await pilot.press("question_mark")  # the keys' help names no run either
        await pilot.pause(0.3)
        assert not sorted(word for word in forbidden if word in "\n".join(screen_text(app)))


def test_the_input_shows_the_mask_edge_and_leaves_the_rest_as_it_was(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), dtype=np.uint8)
    mask[30:80, 50:120] = 255
    mask[60:75, 40:60] = 255  # not a rectangle
    Image.fromarray(mask).save(tmp_path / "mask.png")
    outlined = np.asarray(with_mask_outline(Image.fromarray(pixels), tmp_path / "mask.png", cells=40))
    size = 5  # 160 px at 40 cells: 2 * (160 // 80) + 1
    edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((size, size), np.uint8)) > 0
    assert (outlined[edge] == MASK_TINT).all()
    assert (outlined[~edge] == pixels[~edge]).all(), "only the edge is drawn: the hole's content stays visible"
    assert edge.sum() > 0 and (edge & (mask > 0)).any() and (edge & (mask == 0)).any()  # on both sides of the edge


@pytest.mark.parametrize("width,expected", [(64, 3), (512, 13), (2048, 51)])
def test_the_outline_grows_with_the_image_so_half_blocks_still_show_it(tmp_path, width, expected):
    mask = np.zeros((width, width), dtype=np.uint8)
    mask[width // 4: width // 2, width // 4: width // 2] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    outlined = np.asarray(with_mask_outline(Image.new("RGB", (width, width)), tmp_path / "mask.png"))
    row = outlined[width // 3]  # across the mask's left edge
    red = np.flatnonzero((row == MASK_TINT).all(axis=1))
    assert red[red < width // 3].size == expected - 1  # a band `size` wide, centred on the edge (one side inclusive)


async def test_the_leaderboard_shows_human_scores_and_says_when_studies_mix(tui_store):
    from inpaint_tui.jobs.judging import refresh_human_scores, simulate_raters
    from inpaint_tui.tui.app import InpaintApp

    store = tui_store
    vanilla, blended, tdpaint = store.ids["finished"]
    for runs in ([vanilla, blended, tdpaint], [vanilla, blended]):
        study, _ = open_study(store, runs)
        simulate_raters(store, study.id, metric="bg_mse", raters=2)
        refresh_human_scores(store, study.id)
    app = InpaintApp(store, image_class=HalfcellImage, refresh_seconds=3600, offer_demo=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.action_area("leaderboard")
        await until(pilot, lambda: getattr(app.screen, "complete", False), "the ranking")
        await pilot.pause(0.3)
        from textual.widgets import Label

        assert "human" in "\n".join(screen_text(app))  # the column
        status = str(app.screen.query_one("#status", Label).render())
        assert "human from 2 studies (not comparable)" in status
