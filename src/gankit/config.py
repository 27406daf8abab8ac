"""Run configuration: presets (YAML shipped in ``gankit/configs``), user YAML, flags and ``--set`` overrides.

A run config is plain data with three sections, each checked key by key:

- ``model``: the family's config dataclass (``gankit.models``), e.g. ``family: sagan``;
- ``data``: which dataset (``digits`` built in) and where;
- ``training``: optimisers, loss, schedule of samples / logs / checkpoints, seed, device.

Resolution order (later wins): preset, ``--config FILE``, flags such as ``--steps``, ``--set key=value``.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gankit.augment import AUGMENT_KINDS, DEFAULT_POLICY, parse_policy
from gankit.errors import SEED_LIMIT, UserError, build_section, check_field_types, check_number, did_you_mean
from gankit.losses import LOSS_NAMES
from gankit.models.base import ModelConfig
from gankit.models.registry import model_config_from_dict


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats and booleans: ``4e-4`` is a number, not the string PyYAML 1.1 makes of
    it, and only ``true`` / ``false`` are booleans (``amp: off`` is the string ``off``, not False)."""


# a copy of the resolvers, without YAML 1.1's yes/no/on/off booleans
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


DATASETS = ("auto", "folder", "mnist", "cifar10", "digits", "cache")
SPLITS = ("train", "test", "all")
LABEL_MODES = ("none", "subdirs")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"  # auto (detected from path), folder, mnist, cifar10, cache, digits
    path: str | None = None
    split: str = "train"  # MNIST / CIFAR-10 / digits: train, test or all
    labels: str | None = None  # folders: subdirs (one sub-folder per class), none; None: subdirs iff conditional
    strict: bool = False  # a bad image file is an error instead of a skipped file
    num_workers: int | None = None  # folder decoding processes; None: one per core but one (at most 8)
    max_images: int | None = None  # a class-balanced subset of this many training images (limited-data runs)
    subset_seed: int = 0  # which subset max_images takes

    def __post_init__(self) -> None:
        check_field_types(self, "data")

    def validate(self) -> None:
        """Raise :class:`UserError` on a value or combination training would refuse. What is at the path (does it
        exist, is one needed for the dataset) is checked when the data is opened."""
        if self.dataset not in DATASETS:
            raise UserError(
                f"data.dataset {self.dataset!r} is unknown{did_you_mean(str(self.dataset), DATASETS)}; "
                f"choose one of: {', '.join(DATASETS)}"
            )
        if self.split not in SPLITS:
            raise UserError(f"data.split {self.split!r} is not one of {', '.join(SPLITS)}")
        if self.labels is not None and self.labels not in LABEL_MODES:
            raise UserError(f"--labels {self.labels!r} is unknown; use subdirs (one sub-folder per class) or none")
        if self.num_workers is not None:
            check_number("data.num_workers", self.num_workers, integer=True, low=0,
                         hint=" (0: decode in the training process)")
        if self.max_images is not None:
            check_number("data.max_images", self.max_images, integer=True, low=1, hint=" (or null: all images)")
        check_number("data.subset_seed", self.subset_seed, integer=True, low=0, high=SEED_LIMIT, high_open=True)
        if self.dataset == "digits" and self.path is not None:
            raise UserError("the built-in digits dataset takes no --data path; drop --data or set data.dataset")
        if self.dataset in ("digits", "mnist", "cifar10", "cache") and self.labels == "subdirs":
            raise UserError(f"--labels subdirs is for image folders; {self.dataset} data carries its own labels")


LR_DECAYS = ("constant", "linear")
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    steps: int = 1_000_000
    batch_size: int = 64
    loss: str = "hinge"
    gp_weight: float | None = None  # None: 10 for wgan-gp, 0 otherwise
    drift: float = 0.0
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    g_betas: tuple[float, float] = (0.0, 0.9)
    d_betas: tuple[float, float] = (0.0, 0.9)
    lr_decay: str = "constant"  # constant, or linear: both learning rates fall linearly to 0 at training.steps
    n_critic: int = 1
    ema_decay: float = 0.999
    ema_warmup: bool = True
    sample_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    seed: int = 0
    device: str = "auto"
    tensorboard: bool = True
    amp: str = "auto"  # CUDA mixed precision: auto (bf16 where supported, else fp16), bf16, fp16, off
    channels_last: bool = True  # NHWC: ~12% faster on CPU (fp32 and bf16; benchmarks/README.md), what tensor cores want
    compile: bool = False  # torch.compile G and D (opt-in: on CPU it does not pay for training)
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA only)
    nan_patience: int = 5  # consecutive non-finite steps before rolling back to the last checkpoint
    nan_lr_factor: float = 0.5  # learning-rate scale applied at each rollback
    max_rollbacks: int = 3
    eval_every: int | None = None  # steps between evaluations of the EMA generator (FID, ...); None / 0: off
    eval_num: int = 2000  # generated images per evaluation
    eval_features: str = "auto"  # auto (classifier for digits, Inception otherwise), inception, digits or FILE
    # Differentiable augmentation of everything D sees (gankit.augment): none, diffaugment or ada.
    augment: str = "none"
    augment_policy: str = DEFAULT_POLICY  # diffaugment: any comma list of color, translation, cutout
    ada_target: float = 0.6  # ada: p moves so that E[sign(D(real))] approaches this
    ada_interval: int = 4  # ada: steps between adjustments of p
    ada_kimg: float = 500  # ada: thousands of real images for p to move by 1
    lecam_weight: float = 0.0  # LeCam regularisation of D (0: off); 0.3 for hinge logits in the paper
    lecam_decay: float = 0.99  # EMA decay of D's mean outputs that LeCam pulls towards
    lecam_start: int = 1000  # step from which the EMAs decay (before: they follow the last batch) and LeCam acts

    def __post_init__(self) -> None:
        if isinstance(self.augment_policy, (list, tuple)):  # a list of ops, as runs before this check could hold
            object.__setattr__(self, "augment_policy", ",".join(map(str, self.augment_policy)))
        check_field_types(self, "training")

    def validate(self) -> None:
        """Raise :class:`UserError` on a value out of its range (the types were checked when it was made)."""
        for name in ("steps", "batch_size", "n_critic", "sample_every", "log_every", "checkpoint_every",
                     "nan_patience", "ada_interval"):
            check_number(f"training.{name}", getattr(self, name), integer=True, low=1)
        for name in ("keep_checkpoints", "max_rollbacks", "lecam_start"):
            check_number(f"training.{name}", getattr(self, name), integer=True, low=0)
        check_number("training.seed", self.seed, integer=True, low=0, high=SEED_LIMIT, high_open=True)
        for name in ("g_lr", "d_lr", "ada_kimg"):
            check_number(f"training.{name}", getattr(self, name), low=0, low_open=True)
        for name in ("g_betas", "d_betas"):
            if not all(0 <= b < 1 for b in getattr(self, name)):
                raise UserError(f"training.{name} must be two numbers in [0, 1), got {list(getattr(self, name))!r}")
        if self.lr_decay not in LR_DECAYS:
            raise UserError(f"training.lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        for name in ("ema_decay", "lecam_decay"):
            check_number(f"training.{name}", getattr(self, name), low=0, high=1, high_open=True)
        if self.loss not in LOSS_NAMES:
            raise UserError(
                f"training.loss {self.loss!r} is unknown{did_you_mean(self.loss, LOSS_NAMES)}; "
                f"choose one of: {', '.join(LOSS_NAMES)}"
            )
        if self.gp_weight is not None:
            check_number("training.gp_weight", self.gp_weight, low=0)
        if self.amp not in AMP_MODES:
            raise UserError(f"training.amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        check_number("training.nan_lr_factor", self.nan_lr_factor, low=0, high=1, low_open=True)
        check_number("training.drift", self.drift, low=0)
        if self.eval_every is not None:
            check_number("training.eval_every", self.eval_every, integer=True, low=0, hint=" (0 or null: off)")
        # every metric needs a few images (density/coverage: k + 1 = 6 neighbours, gankit.metrics.evaluate.MIN_IMAGES)
        check_number("training.eval_num", self.eval_num, integer=True, low=6, hint=" (the metrics need neighbours)")
        self._validate_augmentation()

    def _validate_augmentation(self) -> None:
        if self.augment not in AUGMENT_KINDS:
            raise UserError(
                f"training.augment {self.augment!r} is unknown{did_you_mean(str(self.augment), AUGMENT_KINDS)}; "
                f"choose one of: {', '.join(AUGMENT_KINDS)}"
            )
        try:
            parse_policy(self.augment_policy)
        except UserError as exc:
            raise UserError(f"training.augment_policy: {exc}") from None
        check_number("training.ada_target", self.ada_target, low=0, high=1, low_open=True, high_open=True,
                     hint=" (stylegan2-ada uses 0.6)")
        check_number("training.lecam_weight", self.lecam_weight, low=0, hint=" (0: off)")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    preset: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "description": self.description,
            "model": self.model.to_dict(),
            "data": _plain(dataclasses.asdict(self.data)),
            "training": _plain(dataclasses.asdict(self.training)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        data = dict(data)
        unknown = set(data) - {"preset", "description", "model", "data", "training"}
        if unknown:
            key = sorted(unknown)[0]
            raise UserError(
                f"unknown config section {key!r}{did_you_mean(key, ['model', 'data', 'training'])}; "
                "sections are model, data, training"
            )
        if not isinstance(data.get("model"), dict):
            raise UserError("the config has no 'model' section; start from a preset (gankit train --preset NAME)")
        training = build_section(TrainingConfig, data.get("training") or {}, "training")
        training.validate()
        data_cfg = build_section(DataConfig, data.get("data") or {}, "data")
        data_cfg.validate()
        if data_cfg.max_images is not None and data_cfg.max_images < training.batch_size:
            raise UserError(
                f"data.max_images ({data_cfg.max_images}) is below training.batch_size ({training.batch_size}); "
                "raise it or lower the batch size"
            )
        return cls(
            model=model_config_from_dict(data["model"]),
            data=data_cfg,
            training=training,
            preset=data.get("preset"),
            description=data.get("description") or "",
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ----------------------------------------------------------------------------------------------- presets


def preset_names() -> list[str]:
    files = resources.files("gankit.configs").iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's raw dict (with ``preset: name`` set)."""
    names = preset_names()
    if name not in names:
        raise UserError(f"unknown preset {name!r}{did_you_mean(name, names)}; presets: {', '.join(names)}")
    text = resources.files("gankit.configs").joinpath(f"{name}.yaml").read_text()
    data = _parse_yaml(text, f"preset {name}")
    data["preset"] = name
    return data


def preset_descriptions() -> dict[str, str]:
    return {name: str(load_preset(name).get("description", "")).strip() for name in preset_names()}


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{where}: invalid YAML{line}: {problem}; fix the file and retry") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping (model:, data:, training:), got {type(data).__name__}")
    return data


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML config file: UTF-8 (a byte-order mark allowed), or UTF-16 with its byte-order mark
    (as YAML allows); a folder, a missing, unreadable or binary file is a one-line :class:`UserError`."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"config file {str(p)!r} is a folder; give the YAML file inside it to --config")
    if not p.is_file():
        raise UserError(f"config file {str(p)!r} does not exist; check the path given to --config")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UserError(f"config file {str(p)!r} cannot be read ({why}); check its permissions") from None
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not {'UTF-16' if utf16 else 'UTF-8'} text (an undecodable byte at offset "
                        f"{exc.start}); give --config a YAML file saved as UTF-8") from None
    if "\x00" in text:
        raise UserError(f"{p}: not a text file (it holds NUL bytes: binary, or UTF-16 without a byte-order mark); "
                        "give --config a YAML file saved as UTF-8")
    return _parse_yaml(text, str(p))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# The flags of `gankit train` that set a config key: argparse name -> (the flag, section.key). A new run merges
# their values over the preset (flag_overrides); a resume checks them like --set of that key.
TRAIN_FLAGS: dict[str, tuple[str, str]] = {
    "steps": ("--steps", "training.steps"),
    "device": ("--device", "training.device"),
    "checkpoint_every": ("--checkpoint-every", "training.checkpoint_every"),
    "batch_size": ("--batch-size", "training.batch_size"),
    "seed": ("--seed", "training.seed"),
    "data": ("--data", "data.path"),
    "dataset": ("--dataset", "data.dataset"),
    "labels": ("--labels", "data.labels"),
    "strict": ("--strict", "data.strict"),
}


def flag_overrides(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The config sections the given flags set (``values``: argparse name -> value, None where not given):
    ``{"training": {"steps": 10}, "data": {...}}``. ``--data`` alone means its format is detected
    (``data.dataset: auto``)."""
    out: dict[str, dict[str, Any]] = {"training": {}, "data": {}}
    for name, (_, key) in TRAIN_FLAGS.items():
        if values.get(name) is not None:
            section, field = key.split(".")
            out[section][field] = values[name]
    if "path" in out["data"]:
        out["data"].setdefault("dataset", "auto")
    return out


def parse_assignment(assignment: str) -> tuple[str, Any]:
    """``key=value`` as ``--set`` takes it: ``(key, value)``, the value read as YAML 1.2 (text that is not YAML
    stays text; nothing after ``=`` is null)."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected key=value, e.g. --set training.g_lr=2e-4")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_set(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """``data`` with ``--set section.key=value`` applied; a bare ``key`` is found if it is unique."""
    key, value = parse_assignment(assignment)
    path = key.split(".")
    if len(path) == 1:
        owners = [
            s for s in ("model", "data", "training") if isinstance(data.get(s), dict) and key in _known_keys(data, s)
        ]
        if len(owners) != 1:
            sections = "model, data or training"
            raise UserError(f"--set {key}: give its section, e.g. --set training.{key}=... ({sections})")
        path = [owners[0], key]
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: {part!r} is not a section")
    node[path[-1]] = value
    return out


def _known_keys(data: dict[str, Any], section: str) -> set[str]:
    if section == "training":
        return {f.name for f in dataclasses.fields(TrainingConfig)}
    if section == "data":
        return {f.name for f in dataclasses.fields(DataConfig)}
    try:
        from gankit.models.registry import get_family

        return {f.name for f in dataclasses.fields(get_family(data["model"]["family"]).config)}
    except (UserError, KeyError, TypeError):
        return set(data.get("model", {}))


def resolve_config(
    preset: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a preset, a YAML file, flag overrides and ``--set``s."""
    if preset is None and config_file is None:
        raise UserError("give --preset NAME or --config FILE.yaml (gankit presets lists the presets)")
    data: dict[str, Any] = load_preset(preset) if preset else {}
    if config_file:
        data = deep_merge(data, load_yaml_file(config_file))
    if overrides:
        data = deep_merge(data, overrides)
    for assignment in sets or []:
        data = apply_set(data, assignment)
    return RunConfig.from_dict(data)
