"""`inpaint-tui worker` and `inpaint-tui workers`: background execution."""

from __future__ import annotations

import time
from typing import Optional

import typer

from inpaint_tui.cli.base import (
    JSON_HELP,
    app,
    context_of,
    fail,
    print_json,
    rich_console,
    user_errors,
    workers_app,
)


@app.command()
def worker(
    ctx: typer.Context,
    gpus: Optional[str] = typer.Option(None, "--gpus", help="One worker process per GPU, e.g. 0,1 (CUDA_VISIBLE_DEVICES "
                                       "pinned per process)."),
    processes: int = typer.Option(1, "--processes", min=1, help="Worker processes on --device (CPU boxes, tests)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS|auto", help="One worker per GPU of "
                                              "the Ray cluster at ADDRESS (host:port, ray://..., auto: the cluster "
                                              "`ray start` began on this machine); needs the ray extra."),
    once: bool = typer.Option(False, "--once", help="Exit when the queue is empty instead of waiting for runs."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16, fp32 (default: the run's, else by device)."),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", min=0, help="Exit after this many seconds without "
                                              "queued runs (default: wait forever)."),
    log_file: Optional[str] = typer.Option(None, "--log", help="Append the log to this file instead of stderr."),
    worker_id: Optional[int] = typer.Option(None, "--worker-id", hidden=True),
    device_label: Optional[str] = typer.Option(None, "--device-label", hidden=True),
    heartbeat: Optional[float] = typer.Option(None, "--heartbeat", hidden=True, min=0.05),
    stale_after: Optional[float] = typer.Option(None, "--stale-after", hidden=True, min=0.1),
) -> None:
    """Execute queued runs in the background (Ctrl-C or SIGTERM: stop at the next step, the
    run in progress goes back to the queue)."""
    from inpaint_tui.jobs.worker import (
        HEARTBEAT_SECONDS,
        STALE_AFTER_SECONDS,
        configure_logging,
        supervise,
        worker_main,
    )

    from engine.models import validate_device  # torch-free

    if ray_address is not None and (gpus is not None or processes > 1):
        fail("--ray places the workers itself: use it without --gpus and --processes", 2)
    configure_logging(log_file)
    with user_errors():
        validate_device(device)
        store = context_of(ctx).store()
        # Checked once here too, so a bad data root is one line, not one per child process.
        store.require_writable_data_dir()
    if ray_address is not None:
        from inpaint_tui.jobs.ray_workers import RayError, serve_on_ray

        try:
            code = serve_on_ray(store, ray_address, once=once, idle_exit=idle_exit, device=device, dtype=dtype,
                                log_path=log_file, heartbeat=heartbeat or HEARTBEAT_SECONDS,
                                stale_after=stale_after or STALE_AFTER_SECONDS)
        except RayError as error:
            fail(str(error), 1)
        raise typer.Exit(code)
    common = (["--once"] if once else []) + (["--idle-exit", str(idle_exit)] if idle_exit is not None else []) \
        + (["--dtype", dtype] if dtype else []) + (["--heartbeat", str(heartbeat)] if heartbeat else []) \
        + (["--stale-after", str(stale_after)] if stale_after else []) + (["--log", log_file] if log_file else [])
    if gpus is not None:
        indices = [g.strip() for g in gpus.split(",") if g.strip()]
        if not indices or not all(g.isdigit() for g in indices):
            fail(f"--gpus must list GPU indices like 0,1, not {gpus!r}", 2)
        slots = [({"CUDA_VISIBLE_DEVICES": g}, ["--device", "cuda", "--device-label", f"cuda:{g}", *common])
                 for g in indices]
        raise typer.Exit(supervise(store, slots, once=once))
    if processes > 1:
        slots = [({}, (["--device", device] if device else []) + common) for _ in range(processes)]
        raise typer.Exit(supervise(store, slots, once=once))
    with user_errors():  # e.g. a `--once` worker whose database stopped taking writes
        code = worker_main(
            store, once=once, idle_exit=idle_exit, device=device, dtype=dtype, device_label=device_label,
            worker_id=worker_id, log_path=log_file, heartbeat=heartbeat or HEARTBEAT_SECONDS,
            stale_after=stale_after or STALE_AFTER_SECONDS,
        )
    raise typer.Exit(code)


@workers_app.callback(invoke_without_command=True)
def workers(
    ctx: typer.Context,
    include_ended: bool = typer.Option(False, "--all", help="Also list stopped and lost workers."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List live workers on every box: host, device, current run, last heartbeat, data root (`workers stop`
    stops them)."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        store = context_of(ctx).store()
        infos = store.workers(include_ended=include_ended)
    if as_json:
        print_json([info.to_dict() for info in infos])
        return
    if not infos:
        typer.echo("no live workers (start one with `inpaint-tui worker`, or `run --detach`)", err=True)
        return
    from rich.text import Text

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    now = time.time()
    console = rich_console()
    # Narrow: the paths go first (listed below the table), then pid and host.
    columns = [Column("worker", "worker", [], justify="right"), Column("kind", "kind", []),
               Column("status", "status", []), Column("device", "device", []),
               Column("run", "run", [], justify="right"), Column("model", "model", [], wrap=True, fold=True),
               Column("host", "host", [], priority=2), Column("pid", "pid", [], justify="right", priority=3),
               Column("heartbeat", "heartbeat", [], justify="right"),
               Column("data_root", "data root", [], wrap=True, fold=True, priority=5),
               Column("log", "log", [], wrap=True, fold=True, priority=4)]
    rows = [[info.id, info.kind, info.status, info.device or "-", info.run_id or "-", info.model or "-",
             info.host, info.pid or "-", f"{now - info.heartbeat_at:.0f} s ago", info.data_root or "-",
             info.log_path or "-"] for info in infos]  # paths as each worker's own box sees them
    dropped = print_table(console, from_rows(columns, rows), boxed=True, say_dropped=False).dropped_keys
    if {"data_root", "log"} & set(dropped):
        for info in infos:
            console.print(Text(f"  worker {info.id} on {info.host}: data root {info.data_root or '-'}, "
                               f"log {info.log_path or '-'}"))


@workers_app.command("stop")
def workers_stop(
    ctx: typer.Context,
    worker_ids: Optional[list[int]] = typer.Argument(None, metavar="WORKER_ID", help="Worker ids (default: every "
                                                     "live worker)."),
) -> None:
    """Stop workers at their next denoising step; their runs go back to the queue.

    Through the store, so it reaches workers wherever they run: this box, another one, Ray actors."""
    with user_errors():
        store = context_of(ctx).store()
        targets = worker_ids or [info.id for info in store.workers()]
        if not targets:
            typer.echo("no live workers", err=True)
            return
        for worker_id in targets:
            info = store.request_worker_stop(worker_id)
            typer.echo(f"stop requested: worker {info.id} ({info.kind} on {info.host}, {info.device or '-'})", err=True)
