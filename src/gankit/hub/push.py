"""``push_to_hub``: a pretrained folder built in a temporary folder and uploaded to a Hub model repository as
one commit."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from gankit.errors import ParameterError, UserError
from gankit.hub.layout import PretrainedDir
from gankit.hub.pretrained import save_pretrained
from gankit.hub.remote import first_line, is_repo_id, offline_mode, require_hub
from gankit.models.base import Generator
from gankit.version import __version__


@dataclasses.dataclass(frozen=True)
class Pushed:
    """What :func:`push_to_hub` sent: the repository's URL, the commit's URL and the files (paths in the repo)."""

    repo_url: str
    commit_url: str | None
    files: tuple[str, ...]


def push_to_hub(
    source: Generator | str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    include_discriminator: bool = False,
    best: bool = False,
    license: str | None = None,  # noqa: A002 - the model card's key
) -> Pushed:
    """Upload ``source`` (see :func:`save_pretrained`) to the Hub model repository ``repo_id`` (``user/name``) as
    one commit: the pretrained folder is built in a temporary folder, the repository created when missing
    (``private`` only applies then), the branch ``revision`` created from main when missing, and the folder
    uploaded. ``token`` defaults to the saved one (``hf auth login``) or ``HF_TOKEN``."""
    hf = require_hub("pushing to the Hugging Face Hub")
    from huggingface_hub import errors

    if not is_repo_id(repo_id):
        raise ParameterError("repo_id", f"must be user/name or org/name (letters, digits, - _ .), got {repo_id!r}")
    if offline_mode(hf):
        raise UserError("pushing needs the network, but HF_HUB_OFFLINE=1 is set; unset it to push")
    token = token or hf.get_token()
    if not token:
        raise UserError("no Hugging Face token: log in with `hf auth login`, set HF_TOKEN or pass a token (--token)")
    ready = not isinstance(source, Generator) and PretrainedDir(source).is_pretrained()
    if ready and (best or license is not None):
        raise ParameterError("best" if best else "license", f"is for run folders; {source} is a pretrained folder "
                             "(its model card states its license)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gankit-push-") as tmp:
        if ready:
            folder = _copy_pretrained(PretrainedDir(source), Path(tmp) / "model", include_discriminator, repo_id)
        else:
            folder = save_pretrained(source, Path(tmp) / "model", include_discriminator=include_discriminator,
                                     best=best, repo_id=repo_id, license=license)
        files = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))
        name = source.config.family if isinstance(source, Generator) else Path(source).name
        message = commit_message or f"Upload {name} with gankit {__version__}"
        api = hf.HfApi(token=token, library_name="gankit", library_version=__version__)
        try:
            url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
            if revision is not None:
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                                     commit_message=message)
        except errors.HfHubHTTPError as exc:
            raise UserError(f"the Hub refused the push to {repo_id}: {first_line(exc)}") from None
        except (errors.HTTPError, OSError) as exc:  # no connection (httpx's errors, OfflineModeIsEnabled)
            raise UserError(f"cannot reach the Hugging Face Hub to push {repo_id}: {first_line(exc)}") from None
    repo_url = str(url) + (f"/tree/{revision}" if revision else "")
    return Pushed(repo_url, getattr(info, "commit_url", None), files)


def _copy_pretrained(source: PretrainedDir, dest: Path, include_discriminator: bool, repo_id: str) -> Path:
    """A pretrained folder as it is pushed (``gankit import`` writes them): gankit's files of ``source``
    (``discriminator/`` with ``include_discriminator``), the model card's placeholder repo id replaced."""
    dest.mkdir(parents=True)
    for name in PretrainedDir.ARTEFACTS:
        path = source.root / name
        if name == PretrainedDir.DISCRIMINATOR:
            if include_discriminator and path.is_dir():
                shutil.copytree(path, dest / name)
            elif include_discriminator:
                raise ParameterError("include_discriminator", f"{source.root} has no discriminator/")
        elif name == PretrainedDir.CARD and path.is_file():
            card = path.read_text(encoding="utf-8")
            (dest / name).write_text(card.replace('"user/name"', f'"{repo_id}"')
                                     .replace("--checkpoint user/name", f"--checkpoint {repo_id}"), encoding="utf-8")
        elif path.is_file():
            shutil.copy2(path, dest / name)
    return dest


__all__ = ["Pushed", "push_to_hub"]
