"""`xtts-desktop download`: agree to the licence, then fetch XTTS v2 with a progress bar."""

from __future__ import annotations

import argparse
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

from xtts_desktop.errors import Cancelled, UserError


def register(commands: Any, add_model_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `download` subcommand (it loads no model, so it takes no model options)."""
    parser = commands.add_parser(
        "download",
        help="get XTTS v2 (after you agree to its non-commercial licence)",
        description=(
            "Download XTTS v2 from the Hugging Face Hub into the Hugging Face cache (or --dir), "
            "after you agree to the Coqui Public Model License; or record a folder of XTTS v2 "
            "files already on disk with --use-folder. Interrupted downloads resume."
        ),
    )
    parser.add_argument(
        "--agree-license",
        action="store_true",
        help="agree to the Coqui Public Model License (non-commercial use only), unasked",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--dir", metavar="DIR", help="save the files into DIR, not the Hugging Face cache"
    )
    where.add_argument(
        "--use-folder",
        metavar="DIR",
        help="use XTTS v2 files already in DIR (checked, not copied); downloads nothing",
    )
    parser.set_defaults(handler=cmd_download)


def _eprint(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _show_license(download: Any) -> None:
    _eprint(f"XTTS v2 is licensed under the {download.LICENSE_NAME}.")
    for line in textwrap.wrap(download.LICENSE_SUMMARY, width=88, break_on_hyphens=False):
        _eprint(f"  {line}")
    _eprint(f"  Full text: {download.LICENSE_URL} (copy: {download.LICENSE_MIRROR_URL})")


def _ask_agreement(args: argparse.Namespace, download: Any) -> None:
    """Record the agreement, or raise before any request is made."""
    agreement = download.read_agreement()
    if agreement is not None:
        _eprint(f"You agreed to this licence on {agreement.agreed_at or 'an earlier run'}.")
        download.apply_coqui_switch()
        return
    if args.agree_license:
        download.record_agreement()
        _eprint("You agreed to the licence (--agree-license).")
        return
    if not sys.stdin.isatty():
        raise UserError(
            "XTTS v2 is downloaded only after you agree to its licence, and there is no terminal "
            "to ask in: read it, then run 'xtts-desktop download --agree-license'. Nothing was "
            "downloaded."
        )
    try:
        answer = input("Do you agree to the Coqui Public Model License? Type 'yes' to agree: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() != "yes":
        raise UserError("You did not agree to the licence, so nothing was downloaded.")
    download.record_agreement()


class _Bar:
    """A tqdm bar on stderr fed from the download's progress callbacks (any thread)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.shown = 0
        self.file = ""

    def __call__(self, progress: Any) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=progress.total_bytes,
                initial=progress.done_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
                desc="XTTS v2",
            )
            self.shown = progress.done_bytes
        if progress.filename != self.file:
            self.file = progress.filename
            self.bar.set_postfix_str(
                f"{progress.filename} ({progress.file_index}/{progress.file_count})"
            )
        step = progress.done_bytes - self.shown
        if step:
            self.bar.update(step)
            self.shown = progress.done_bytes

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_download(args: argparse.Namespace) -> int:
    from xtts_desktop import download

    if args.use_folder:
        folder = download.use_model_folder(args.use_folder)
        _eprint("The folder was checked and recorded; its files stay where they are.")
        print(f"XTTS v2 will be loaded from {folder}")
        return 0

    _show_license(download)
    _ask_agreement(args, download)
    target = args.dir
    _eprint(f"Downloading XTTS v2 ({download.REPO_ID}) into {target or 'the Hugging Face cache'}…")

    cancel = threading.Event()
    finished = threading.Event()
    bar = _Bar()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = download.download_model(target, progress=bar, cancel=cancel)
        except BaseException as error:  # handed to the main thread as it is
            outcome["error"] = error
        finally:
            finished.set()

    # The download runs beside the main thread, so Ctrl+C here sets `cancel` and the download
    # stops between two blocks with its files closed and the partial file kept. (An Event, not
    # Thread.join: a join interrupted by Ctrl+C can report a live thread as finished.)
    threading.Thread(target=work, name="xtts-download", daemon=True).start()
    interrupted = False
    while not finished.is_set():
        try:
            finished.wait(0.2)
        except KeyboardInterrupt:
            if not interrupted:
                _eprint("\nStopping…")
            interrupted = True
            cancel.set()
    bar.close()
    error = outcome.get("error")
    if isinstance(error, Cancelled):
        _eprint(f"Stopped. {error}")
        return 130
    if error is not None:
        raise error
    result = outcome["result"]
    if interrupted:
        _eprint("(The download had already finished when it was interrupted.)")
    fetched = download.format_bytes(result.downloaded_bytes)
    reused = (
        f"; {len(result.reused_files)} file(s) were already there" if result.reused_files else ""
    )
    _eprint(f"Fetched {fetched} from {download.REPO_ID} at commit {result.commit[:12]}{reused}.")
    print(f"XTTS v2 is ready in {result.model_dir}")
    return 0
