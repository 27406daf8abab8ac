"""Hub repo ids: recognising one, finding its files in the Hub cache or downloading them, and the optional
extra ``gankit[hub]``.

Where a source is looked for: a local path first (a pretrained folder; anything else is left to
:func:`gankit.api.load_generator`), then, for a ``user/name`` repo id, the Hub cache and the network as
``huggingface_hub.hf_hub_download`` does it (online it checks that the cached revision is current; a commit hash
is served from the cache without a request). ``HF_HUB_OFFLINE=1`` (read when called, not only when
huggingface_hub was imported) or ``local_files_only=True`` allow the cache only. ``huggingface_hub`` is imported
only here and in :mod:`gankit.hub.push`; without it they fail with one line naming the extra.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gankit.errors import ParameterError, UserError
from gankit.hub.layout import PretrainedDir
from gankit.version import __version__

HUB_EXTRA = "pip install 'gankit[hub]'"
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a true environment variable
_NAME = re.compile(r"[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?")
# a missing file with one of these suffixes is a mistyped path, never a repo id
_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz", ".ckpt", ".bin", ".pkl", ".json", ".yaml", ".png")
GENERATOR_FILES = (PretrainedDir.CONFIG, PretrainedDir.WEIGHTS)
DISCRIMINATOR_FILES = tuple(f"{PretrainedDir.DISCRIMINATOR}/{name}" for name in GENERATOR_FILES)


def require_hub(what: str):
    """The ``huggingface_hub`` module, or a one-line :class:`UserError`: ``{what} needs the hub extra: ...``."""
    try:
        import huggingface_hub
        import huggingface_hub.errors  # noqa: F401 - the exception types are read from it
    except ImportError:
        raise UserError(f"{what} needs the hub extra: {HUB_EXTRA}") from None
    return huggingface_hub


def offline_mode(hf) -> bool:
    """Whether the Hub may not be reached: huggingface_hub's own check, or ``HF_HUB_OFFLINE`` /
    ``TRANSFORMERS_OFFLINE`` as the environment says now (huggingface_hub reads them once, at import)."""
    now = any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(hf.is_offline_mode()) or now


def is_repo_id(text: str) -> bool:
    """``namespace/name`` as the Hub spells repo ids (letters, digits, ``-_.``, at most 96 characters, no ``--``
    or ``..``), and not a missing file name (``runs/x.pt``). Checked without huggingface_hub."""
    parts = text.split("/")
    if len(parts) != 2 or len(text) > 96 or "--" in text or ".." in text or text.endswith(".git"):
        return False
    return all(_NAME.fullmatch(part) for part in parts) and not text.lower().endswith(_FILE_SUFFIXES)


_LOCAL_PREFIXES = ("./", "../", "/", "~")


def local_path_reason(text: str) -> str | None:
    """Why ``text`` names a local path and is never read as a Hub repo id, even when it reads ``user/name``: it
    starts with ``./``, ``../``, ``/`` or ``~``, or its first component exists here (``runs/dmeo`` when ``runs/`` is
    a folder: a mistyped path must not become a Hub request). None when it may be a repo id."""
    posix = text.replace(os.sep, "/")
    for prefix in _LOCAL_PREFIXES:
        if posix.startswith(prefix):
            return f"it starts with {prefix}"
    if Path(text).is_absolute():
        return "it is an absolute path"
    first = posix.split("/", 1)[0]
    if first and os.path.lexists(first):
        return f"{first}/ is a local folder" if os.path.isdir(first) else f"{first} is a local file"
    return None


def not_a_repo_id(text: str) -> str:
    """``(runs/ is a local folder, so it is not read as a Hub repo id)``, the note a missing path that reads
    ``user/name`` gets; an empty string for other paths."""
    posix = Path(text).as_posix()
    reason = local_path_reason(text)
    if reason is None or not is_repo_id(posix):
        return ""
    return f" ({reason}, so it is not read as a Hub repo id)"


def is_hub_source(text: str) -> bool:
    """Whether ``text`` is read as a Hub repo id: no local path of that name exists, nor its first component, it
    starts with none of ``./ ../ / ~``, and :func:`is_repo_id` accepts it."""
    return not os.path.lexists(text) and local_path_reason(text) is None and is_repo_id(Path(text).as_posix())


# -------------------------------------------------------------------------------------- resolving


def resolve_pretrained(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike | None = None,
    files: tuple[str, ...] = GENERATOR_FILES,
) -> Path | None:
    """The local folder holding the pretrained files of ``source``: a pretrained folder itself, or the Hub cache
    snapshot of a ``user/name`` repo id with ``files`` in it (from the cache, else downloaded). None when
    ``source`` is another local path (a run folder, a file) or no repo id: :func:`gankit.api.load_generator`
    reads or refuses those.

    ``revision`` (a branch, tag or commit hash) is for repo ids only. ``cache_dir`` defaults to
    ``HF_HUB_CACHE`` (read now), else huggingface_hub's cache.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.exists():
        if revision is not None:
            raise ParameterError("revision", f"is for Hub repo ids; {text} is a local path")
        return path if path.is_dir() and PretrainedDir(path).is_pretrained() else None
    note = not_a_repo_id(text)
    if note:
        raise UserError(f"{text} does not exist{note}; check the path, or load the repo from another working "
                        "folder")
    text = path.as_posix() if os.sep != "/" else text
    if not is_repo_id(text):
        if revision is not None:
            raise ParameterError("revision", f"is for Hub repo ids (user/name); {text!r} is none")
        return None
    hf = require_hub(f"{text} is no local path; loading it from the Hugging Face Hub")
    return _download(hf, text, files, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)


def _download(hf, repo_id: str, files: tuple[str, ...], *, revision, local_files_only, cache_dir) -> Path:
    from huggingface_hub import errors

    offline = offline_mode(hf)
    cache_only = local_files_only or offline
    if cache_dir is None:
        cache_dir = os.environ.get("HF_HUB_CACHE") or None
    where = repo_id + (f" (revision {revision})" if revision else "")
    paths = []
    for name in files:
        try:
            paths.append(
                hf.hf_hub_download(
                    repo_id, name, revision=revision, cache_dir=cache_dir, local_files_only=cache_only,
                    library_name="gankit", library_version=__version__,
                )  # fmt: skip
            )
        except errors.LocalEntryNotFoundError:
            what = where if name == PretrainedDir.CONFIG else f"{name} of {where}"
            if cache_only:
                why = "HF_HUB_OFFLINE=1 forbids" if offline else "local_files_only=True forbids"
                raise UserError(
                    f"{what} is not in the Hub cache and {why} downloading it; no local path has that name either: "
                    "download it once online, or give an existing folder"
                ) from None
            raise UserError(f"cannot reach the Hugging Face Hub and {what} is not in the Hub cache (nor a local "
                            "path)") from None
        except errors.GatedRepoError:
            raise UserError(f"{repo_id} is gated: accept its terms on the Hub, then log in (hf auth login)") from None
        except errors.RepositoryNotFoundError:
            raise UserError(
                f"{repo_id} is neither a local path nor a Hub model repository (a private one needs a login: "
                "hf auth login)"
            ) from None
        except errors.RevisionNotFoundError:
            raise UserError(f"{repo_id} has no revision {revision!r} on the Hub") from None
        except errors.EntryNotFoundError:
            hint = " (push it with --include-discriminator)" if name in DISCRIMINATOR_FILES else ""
            raise UserError(f"{where} has no {name} on the Hub{hint}; is it a gankit model?") from None
        except errors.HfHubHTTPError as exc:
            raise UserError(f"the Hub refused {name} of {where}: {first_line(exc)}") from None
        except (errors.HTTPError, errors.OfflineModeIsEnabled) as exc:
            raise UserError(f"cannot reach the Hugging Face Hub for {where}: {first_line(exc)}") from None
    # files land in snapshots/<commit>/<name>: the snapshot folder is the pretrained folder
    return Path(paths[0]).parents[len(Path(files[0]).parts) - 1]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]



__all__ = ["DISCRIMINATOR_FILES", "GENERATOR_FILES", "HUB_EXTRA", "is_hub_source", "is_repo_id", "local_path_reason",
           "not_a_repo_id", "offline_mode", "require_hub", "resolve_pretrained"]
