"""Typed, validated configuration: one pydantic model per command, defaults in code.

Every ``hicatalog`` subcommand (and every ``jobs/*.py`` entrypoint) builds exactly one of the
models below, from an optional TOML file (``--config FILE``) overlaid with command-line flags.
Validation happens before any work starts; an unknown key, a wrong type or an out-of-range
value raises :class:`ConfigError` whose message names the key (its whole path, e.g.
``train.epochs``), the value it got, where the value came from and what was expected.

Options and jobs. The options of a command that another command passes on are a model of
their own: :class:`TrainOptions` (with :class:`RegressionOptions` and :class:`PROptions`, the
options of one network), :class:`BuildOptions` and :class:`FetchOptions`. A job's config is
its options plus its inputs and outputs (``TrainConfig(TrainOptions, ...)``: ``task``,
``data``, ``out``). The commands that run others (:class:`WorkflowConfig`,
:class:`DemoConfig`) hold those option models as tables (``[train]`` in TOML,
``--train.epochs`` on the command line), so an option added to an options model reaches them
with no other edit.

The stage libraries never import this module: the command line passes a job's fields to the
stage's library function as keyword arguments of the same names (:mod:`hicatalog.cli`).

Example ``train.toml``::

    task = "regression"
    data = ["runs/demo/mock/train/cutouts"]
    out = "runs/models/regression"
    preset = "quick"
    workers = 2

Example ``workflow.toml`` (tables for the options of the steps)::

    out = "runs/real"
    a40 = "data/a40.datafile1.csv"
    ...
    [fetch]
    max_rps = 10
    [train]
    epochs = 3
    [regression]
    head = "gaussian"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hicatalog.errors import ConfigError
from hicatalog.imaging import SURVEYS
from hicatalog.runtime import PRECISIONS
from hicatalog.tasks import HEADS, LIKELIHOODS, TASKS
from hicatalog.training.options import check_split, check_task_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "JobConfig",
    "MockConfig",
    "TrainOptions",
    "NetworkOptions",
    "RegressionOptions",
    "PROptions",
    "TrainConfig",
    "EnvironmentConfig",
    "BuildOptions",
    "BuildCatalogConfig",
    "EvaluateConfig",
    "FetchOptions",
    "FetchConfig",
    "LabelsConfig",
    "ExportConfig",
    "DemoConfig",
    "WorkflowConfig",
    "load_config",
    "option_tables",
]

#: A survey name (the values of :data:`hicatalog.imaging.SURVEYS`).
Survey = Literal[SURVEYS]
#: A precision choice (the values of :data:`hicatalog.runtime.PRECISIONS`).
Precision = Literal[PRECISIONS]
#: A task (the keys of :data:`hicatalog.tasks.TASK_CLASSES`).
Task = Literal[TASKS]
#: A regression head (the keys of :data:`hicatalog.tasks.REGRESSION_HEADS`).
Head = Literal[HEADS]
#: A regression's likelihood (:data:`hicatalog.tasks.LIKELIHOODS`).
Likelihood = Literal[LIKELIHOODS]
#: A training preset (:data:`hicatalog.training.presets.PRESETS`, which imports torch).
Preset = Literal["quick", "paper"]


def _registered_architecture(name: str) -> str:
    """``name`` if :data:`hicatalog.models.registry.ARCHITECTURES` has it (imported here, when an
    architecture is named, so that reading a config does not import torch)."""
    from hicatalog.models.registry import ARCHITECTURES

    if name not in ARCHITECTURES:
        raise ValueError(f"one of the registered architectures: {', '.join(ARCHITECTURES)}")
    return name


#: A network architecture: a key of :data:`hicatalog.models.registry.ARCHITECTURES`.
Architecture = Annotated[str, AfterValidator(_registered_architecture)]


class JobConfig(BaseModel):
    """Base of every configuration: unknown keys are errors, values are re-validated on
    assignment, and the model is serialisable to JSON for manifests and model cards.

    A field whose type is another configuration (an options table such as ``train``) is
    given as a table of some of its keys: they are laid over the field's default, so a
    table names only what it changes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (for manifests and model cards)."""
        return self.model_dump(mode="json")

    def fields(self) -> dict[str, Any]:
        """Every field's value by name (an options table stays a model): the keyword
        arguments the command line passes to the stage's library function."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    @model_validator(mode="before")
    @classmethod
    def _tables_over_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        merged = dict(values)
        for name in option_tables(cls):
            given = values.get(name)
            if isinstance(given, dict):
                default = cls.model_fields[name].get_default(call_default_factory=True)
                merged[name] = {**default.model_dump(exclude_unset=True), **given}
        return merged


def option_tables(model: type[BaseModel]) -> dict[str, type[JobConfig]]:
    """The fields of ``model`` that are options tables (a :class:`JobConfig` each), by name."""
    return {name: f.annotation for name, f in model.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, JobConfig)}


class MockConfig(JobConfig):
    """``hicatalog mock``: render a synthetic SDSS/Legacy + ALFALFA-like survey."""

    out: str = Field(description="output directory (cutouts/, tracers.parquet, truth.parquet)")
    n: int = Field(5000, ge=1, le=10_000_000, description="number of imaged galaxies")
    seed: int = Field(0, ge=0, description="random seed; same seed gives byte-identical output")
    imaging: Survey = Field("sdss", description="pixel scale, bands and size of the cutouts")
    image_size: int | None = Field(
        None, ge=16, le=1024, description="cutout side in px (default 224 sdss, 448 legacy)"
    )
    population: Literal["alfalfa", "nondetections", "xgass", "all", "survey", "survey_deep"] = Field(
        "all", description="which imaged population to write: one of the paper's balanced "
        "samples, all three mixed, survey (the magnitude-limited survey, ALFALFA labels) or "
        "survey_deep (the same survey with xGASS-deep labels: a calibration set; docs/mock.md)"
    )
    sigma_int: float = Field(0.20, ge=0.0, le=2.0, description="irreducible scatter of M (dex)")
    gallery: str | None = Field(None, description="also draw a Figure-9-like PNG gallery here")
    rows_per_shard: int = Field(2048, ge=1, description="cutouts per Parquet shard")
    workers: int | None = Field(None, ge=1, description="Ray Data parallelism (default: all CPUs)")
    engine: Literal["auto", "local", "ray"] = Field(
        "auto",
        description="render in this process or as a Ray Data job (auto: Ray from 4096 cutouts "
        "or when workers > 1); both give byte-identical shards",
    )
    # The real difficulties (docs/mock.md): each effect follows `realism` unless set.
    realism: Literal["realistic", "clean"] = Field(
        "realistic", description="realistic: every effect below on unless switched off; clean: "
        "every effect off unless switched on (clean alone is the paper-like mock of before, "
        "byte for byte)")
    label_noise: bool | None = Field(
        None, description="H I mass errors growing as the H I S/N falls, 0.1 dex M* errors; "
        "detection on the measured flux (default: per realism)")
    label_outliers: bool | None = Field(
        None, description="a share (--outlier-fraction) of detections with a flux confused "
        "inside the Arecibo beam or a wrong optical counterpart (default: per realism)")
    measured_labels: bool | None = Field(
        None, description="cutouts carry only measured labels: no M for non-detections, xGASS "
        "upper limits (default: per realism)")
    seeing: bool | None = Field(None, description="per-field PSF FWHM (default: per realism)")
    sky_noise: bool | None = Field(None, description="per-field sky noise (default: per realism)")
    calibration: bool | None = Field(
        None, description="per-field, per-band zero-point errors (default: per realism)")
    extinction: bool | None = Field(
        None, description="Galactic E(B-V) map reddening the images (default: per realism)")
    inclination: bool | None = Field(
        None, description="disc reddening and dimming with inclination (default: per realism)")
    neighbours: bool | None = Field(
        None, description="companions from the tracers, blends, tidal features (default: per "
        "realism)")
    outlier_fraction: float = Field(
        0.02, ge=0.0, le=0.5, description="share of detections with an outlier label (with "
        "label_outliers)")
    shifted_imaging: Literal["none", "sdss", "legacy", "degraded"] = Field(
        "none", description="render the same galaxies with other imaging at this --imaging's "
        "pixel scale and size: another survey's bands, seeing, depth and stretch (legacy with "
        "--imaging sdss: Legacy-like images resampled to SDSS), or degraded (1.5x seeing, 1 mag "
        "shallower)")


class TrainOptions(JobConfig):
    """The options of a training that apply to any network (``hicatalog train``'s, and the
    ``[train]`` table of the commands that train: ``workflow``, ``demo``).

    Fields left at ``None`` take their value from the preset (``quick`` or ``paper``).
    """

    preset: Preset = Field("quick")
    workers: int = Field(1, ge=1, le=1024, description="Ray Train workers")
    gpu: bool = Field(False, description="one GPU per worker, bf16 autocast, channels_last")
    precision: Precision = Field(
        "auto", description="bf16 = bf16 autocast + channels_last; auto: bf16 on GPU, fp32 on CPU")
    arch: Architecture | None = Field(
        None, description="network (hicatalog.models.registry.ARCHITECTURES; default: the preset's)")
    width: float | None = Field(None, gt=0.0, le=4.0, description="channel width multiplier")
    image_size: int | None = Field(None, ge=16, le=1024, description="network input side (px)")
    epochs: int | None = Field(None, ge=1, le=1000)
    batch_size: int | None = Field(None, ge=1, le=8192)
    max_lr: float | None = Field(None, gt=0.0, le=10.0)
    weight_decay: float | None = Field(None, ge=0.0, le=1.0)
    label_smoothing: float = Field(0.05, ge=0.0, lt=1.0, description="classifiers' label smoothing")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="random validation fraction")
    split_by: str | None = Field(None, description="column whose quantiles define validation")
    val_quantiles: tuple[float, float] | None = Field(
        None, description="validation quantile range [lo, hi) of split_by"
    )
    seed: int = Field(0, ge=0, description="seed of the validation split and of the first "
                      "member; member k of an ensemble trains with seed + k")
    max_failures: int = Field(3, ge=0, description="worker failures tolerated (FailureConfig)")
    train_samples: list[str] | None = Field(
        None, description="samples (the shards' dataset column, comma list) the regression and "
        "gasclass train on and the PR network takes detections from; None: the paper's a.40A "
        "(a40A,a40B) on real labels, alfalfa on the mock",
    )
    min_rows: int = Field(
        20, ge=2, description="refuse to train on fewer selected rows (training + validation)"
    )
    min_class_rows: int = Field(
        10, ge=1, description="pr, gasclass: refuse to train with fewer rows of either class"
    )

    @field_validator("train_samples", mode="before")
    @classmethod
    def _split_sample_lists(cls, value: Any) -> Any:
        return _sample_list(value)

    @model_validator(mode="after")
    def _check_split(self) -> TrainOptions:
        check_split(self.split_by, self.val_quantiles)
        return self


class NetworkOptions(JobConfig):
    """The options of one network that differ between the networks a command trains."""

    ensemble: int = Field(
        1, ge=1, le=64, description="train a deep ensemble of this many networks (seeds seed, "
        "seed+1, ...), concurrently as the cluster's resources allow; one model directory")


class RegressionOptions(NetworkOptions):
    """The options of the regression network (the ``[regression]`` table of ``workflow`` and
    ``demo``)."""

    head: Head = Field(
        "point", description="regression: 'point' (M, trained on the RMSE: the paper's network) "
        "or 'gaussian' (M and its variance, trained on the Gaussian negative log-likelihood)")
    likelihood: Likelihood = Field(
        "detections", description="regression with the gaussian head: 'detections' (the "
        "measured M of detections only: the paper's sample) or 'censored' (also the upper "
        "limits of the training samples, each contributing the probability that M lies below "
        "it: the Tobit likelihood, so the network learns M over detections and non-detections)")


class PROptions(NetworkOptions):
    """The options of the pattern-recognition network (the ``[pr]`` table of ``workflow`` and
    ``demo``)."""

    negatives: list[str] | None = Field(
        None, description="pr: samples whose non-detections are the negative class, comma list; "
        "None: nondetections",
    )
    upper_limits_as_negatives: bool = Field(
        False, description="pr: also take the upper-limit rows (upper_limit true, e.g. xGASS "
        "non-detections) of the negatives samples as negatives; they are never regression targets",
    )

    @field_validator("negatives", mode="before")
    @classmethod
    def _split_negatives(cls, value: Any) -> Any:
        return _sample_list(value)


class TrainConfig(TrainOptions, RegressionOptions, PROptions):
    """``hicatalog train``: data-parallel training of the regression / PR / gas-class CNNs:
    the training options, the network's, and what it trains on and where it goes."""

    task: Task = Field("regression")
    data: list[str] = Field(min_length=1, description="cutout shard directories (or files)")
    out: str = Field(description="model directory (weights, card, metrics.jsonl)")
    storage_path: str | None = Field(
        None, description="Ray Train storage (local or s3://); default MODEL_DIR/ray"
    )

    @model_validator(mode="after")
    def _check_task(self) -> TrainConfig:
        check_task_options(self.task, head=self.head, negatives=self.negatives,
                           upper_limits_as_negatives=self.upper_limits_as_negatives,
                           likelihood=self.likelihood)
        return self


def _sample_list(value: Any, what: str = "sample name") -> Any:
    """Accept ``"a40A,a40B"``, ``["a40A,a40B"]`` or ``["a40A", "a40B"]``; empty names dropped.
    ``what``: what a name is, for the error."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        return value  # pydantic reports the wrong type
    names = [n.strip() for v in items for n in v.split(",") if n.strip()]
    if not names:
        raise ValueError(f"a comma list of at least one {what}")
    return list(dict.fromkeys(names))


class EnvironmentConfig(JobConfig):
    """``hicatalog environment``: D5, Sigma5 and delta5 (paper Section 7.1)."""

    targets: str = Field(description="Parquet with object_id, ra, dec, z")
    tracers: str = Field(description="Parquet tracers table (object_id, ra, dec, z)")
    out: str = Field(description="output Parquet file")
    n_neighbor: int = Field(
        5, ge=2, le=100, description="which neighbour defines D_N (the galaxy itself is the 1st)"
    )
    velocity_window_kms: float = Field(1000.0, gt=0.0, le=1e5, description="|c dz| limit")
    min_distance_mpc: float = Field(10.0, ge=0.0, description="targets nearer are not used")
    z_window: float = Field(0.02, gt=0.0, le=1.0, description="width of the median boxcar in z")
    h0: float = Field(70.0, gt=0.0, description="Hubble constant (km/s/Mpc)")
    om0: float = Field(0.3, ge=0.0, le=1.0, description="matter density (flat LCDM)")


class InferenceFields(JobConfig):
    """How the models run over cutouts and what else a row reads: the options ``hicatalog
    build-catalog`` and ``hicatalog calibrate`` share (a calibration must see the inputs the
    build will)."""

    gpu: bool = Field(False, description="one GPU per inference actor")
    precision: Precision = Field(
        "auto", description="bf16 = bf16 autocast + channels_last; auto: bf16 on GPU, fp32 on CPU")
    decode: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="where JPEGs are decoded: cpu = Pillow in the read tasks, gpu = "
        "torchvision on the actor's GPU; auto: gpu with gpu=true when torchvision is installed")
    tta: bool = Field(True, description="average the 8 dihedral views")
    batch_size: int = Field(64, ge=1, le=8192)
    actors: int | None = Field(None, ge=1, description="inference actor pool size")
    threads: int | None = Field(
        None, ge=1, le=256, description="CPUs each inference actor reserves, and so its torch threads "
        "(default: one CPU per node left to reading and decoding, the rest shared by the actors)"
    )
    mstar_column: str | None = Field(
        None, description="column of the cutout shards holding log10 stellar mass (Msun), e.g. "
        "an MPA-JHU or NSA mass: the catalog then has log_mhi_pred and mhi_expect (default: "
        "none, those columns are null)")


class BuildOptions(InferenceFields):
    """The options of a catalog build (``hicatalog build-catalog``'s, and the ``[build]``
    table of ``workflow`` and ``demo``)."""

    mstar_err_dex: float = Field(
        0.1, ge=0.0, le=2.0, description="error of the stellar masses (dex), added in quadrature "
        "to m_pred_err in log_mhi_pred_err")
    partition_rows: int = Field(
        500_000, ge=1_000, description="most rows in one published HEALPix partition file "
        "(HATS: pixels are merged up to this many rows)"
    )
    row_group_rows: int = Field(
        10_000, ge=100, description="rows per Parquet row group of the published files (their "
        "ra/dec statistics let queries skip the others)"
    )
    keep_versions: int | None = Field(
        None, ge=1, description="keep only this many newest published versions listed (older "
        "ones are removed from the manifest once the new one is current, and their files by a "
        "vacuum after grace_hours; default: keep all)"
    )
    grace_hours: float = Field(
        24.0, ge=0.0, description="the vacuum at the end of the build deletes the files of "
        "versions removed from the manifest longer ago than this (a reader may still hold one)"
    )
    margin_arcsec: float = Field(
        10.0, ge=0.0, description="width (arcsec) of the margin cache published with each "
        "version, for LSDB cross-matches across partition edges; 0: none (docs/lsdb.md)"
    )


class BuildCatalogConfig(BuildOptions):
    """``hicatalog build-catalog``: streaming inference into the H I catalog: the build
    options, and what it reads and where it writes."""

    cutouts: str = Field(description="cutout shards: directory, file or URL (s3://...)")
    regression: str = Field(description="regression model directory")
    pr: str = Field(description="pattern-recognition model directory")
    out: str = Field(description="catalog output directory")
    tracers: str | None = Field(None, description="tracers Parquet (default: the cutouts)")
    since_manifest: str | None = Field(None, description="old _manifest.json: incremental build")
    calibration: str | None = Field(
        None, description="calibration directory of these models (hicatalog calibrate): "
        "intervals calibrated within groups and p_detect (default: Gaussian intervals, no "
        "p_detect)")


class CalibrateConfig(InferenceFields):
    """``hicatalog calibrate``: fit the intervals within groups and p_detect of a regression
    and PR model on a labelled calibration set used for nothing else (its own catalog build)."""

    cutouts: str = Field(description="labelled calibration cutout shards (m_true, upper_limit, "
                         "detected): galaxies neither network trained on")
    regression: str = Field(description="regression model directory")
    pr: str = Field(description="pattern-recognition model directory")
    out: str = Field(description="calibration directory (calibration.json, catalog/)")
    tracers: str | None = Field(None, description="tracers Parquet (default: the cutouts)")
    n_bins: int = Field(5, ge=2, le=20, description="bins (quantiles) of each group variable")


class EvaluateConfig(JobConfig):
    """``hicatalog evaluate [ANALYSIS]``: the paper's tables and figures."""

    analysis: Literal["catalog", "environment", "gradcam", "baselines", "robustness"] = "catalog"
    catalog: str | None = Field(None, description="catalog directory (analysis=catalog)")
    truth: str | None = Field(None, description="truth/labels Parquet")
    data: list[str] | None = Field(None, description="cutout shards (training analyses)")
    out: str = Field(description="report directory")
    repeats: int = Field(5, ge=1, le=100, description="trainings per split (environment)")
    workers: int = Field(1, ge=1, description="Ray Train workers per training")
    preset: Preset = "quick"
    seed: int = Field(0, ge=0, description="split and training seed (repeats: seed, seed+1, ...)")
    model: str | None = Field(
        None, description="trained regression model directory (robustness; baselines: the CNN)"
    )
    tracers: str | None = Field(
        None, description="tracers Parquet: compute delta5 for the environment analysis"
    )
    arch: Architecture | None = Field(
        None, description="network for the trainings (hicatalog.models.registry.ARCHITECTURES; "
        "default: the preset's)"
    )
    width: float | None = Field(None, gt=0.0, le=4.0, description="channel width multiplier")
    image_size: int | None = Field(None, ge=16, le=1024, description="network input side (px)")
    epochs: int | None = Field(None, ge=1, le=1000, description="epochs of each training")
    batch_size: int | None = Field(None, ge=1, le=8192)
    max_lr: float | None = Field(None, gt=0.0, le=10.0)
    weight_decay: float | None = Field(None, ge=0.0, le=1.0)
    windows: bool = Field(True, description="environment: also the sliding windows (Figure 10)")
    trials: int = Field(100, ge=1, le=10_000, description="robustness: trials per colour")
    n_galaxies: int = Field(3, ge=1, le=100, description="robustness: galaxies to perturb")
    n_images: int = Field(8, ge=1, le=256, description="gradcam: cutouts shown per version")
    max_rows: int | None = Field(
        None, ge=10, description="baselines: fit on at most this many training cutouts"
    )
    gpu: bool = Field(False, description="train on one GPU per worker (as hicatalog train --gpu)")


class FetchOptions(JobConfig):
    """The options of a cutout fetch (``hicatalog fetch``'s, and the ``[fetch]`` table of
    ``workflow``)."""

    survey: Survey = "sdss"
    base_url: str | None = Field(
        None,
        description="the service's whole endpoint URL, path included, without the query "
        "string (hicatalog appends ?ra=...&dec=... itself). sdss (SkyServer ImgCutout/getjpeg): "
        "https://skyserver.sdss.org/dr14/SkyServerWS/ImgCutout/getjpeg, or a mirror such as "
        "http://127.0.0.1:8765/dr14/SkyServerWS/ImgCutout/getjpeg; legacy (viewer cutout.jpg): "
        "https://www.legacysurvey.org/viewer/cutout.jpg, or e.g. "
        "http://127.0.0.1:8765/viewer/cutout.jpg. Default: the survey's public service",
    )
    layer: str = Field("dr8", description="Legacy viewer layer")
    max_rps: float | None = Field(None, gt=0.0, description="requests per second per host")
    concurrency: int = Field(
        32, ge=1, le=1024, description="requests in flight in total (split over the tasks)"
    )
    timeout_s: float = Field(30.0, gt=0.0, description="per-request timeout (s)")
    retries: int = Field(5, ge=0, le=50, description="retries after timeouts, 5xx, 429")
    rows_per_shard: int = Field(2048, ge=1)
    image_size: int | None = Field(
        None, ge=16, le=2048, description="cutout side in px (default 224 sdss, 448 legacy)"
    )
    pixscale: float | None = Field(
        None, gt=0.0, le=60.0, description="arcsec/px (default 0.396 sdss, 0.262 legacy)"
    )
    backoff_s: float = Field(0.5, ge=0.0, le=600.0, description="first retry delay (s)")
    backoff_max_s: float = Field(30.0, ge=0.0, le=3600.0, description="longest retry delay (s)")
    tasks: int = Field(4, ge=1, le=1024, description="Ray Data fetch tasks in parallel")
    user_agent: str | None = Field(None, description="HTTP User-Agent (default hicatalog/VER)")
    limit: int | None = Field(
        None, ge=1,
        description="work on a fixed subset of N targets: the first N of an order that takes "
        "each sample (the 'dataset' column) in proportion to its size, seeded-random within "
        "it (seed, object_id). The same N and seed give the same rows whatever is stored, "
        "so a rerun resumes the subset and a larger N extends it; other rows not yet stored "
        "are counted as deferred",
    )
    seed: int = Field(0, ge=0, description="seed of the limit subset")
    max_failed_fraction: float = Field(
        0.1, ge=0.0, le=1.0,
        description="exit non-zero when more than this fraction of the rows the run tried failed "
        "(a run that tried rows and stored none always fails)",
    )


class FetchConfig(FetchOptions):
    """``hicatalog fetch``: download the cutouts of a target list from SDSS SkyServer or the
    Legacy viewer: the fetch options, the target list and where the shards go."""

    targets: str = Field(
        description="target list: Parquet or CSV with object_id, ra, dec (deg), e.g. labels.parquet"
    )
    out: str = Field(description="output directory of cutout shards")


class LabelsConfig(JobConfig):
    """``hicatalog labels``: read the public catalogs, run the paper's selections (Sections 2
    and 5.2), write ``labels.parquet`` (+ selection steps, a Table-1-like summary, tracers)."""

    out: str = Field(description="output directory")
    a40: str = Field(description="ALFALFA a.40 a40.datafile1.csv")
    a40_sdss: str = Field(
        description="a.40 SDSS cross-match table (PhotoObjID per AGC; ids read exactly)")
    mpa_info: str = Field(description="MPA-JHU DR7 gal_info FITS")
    mpa_mass: str = Field(description="MPA-JHU DR7 total stellar mass FITS (row-aligned)")
    mpa_sfr: str | None = Field(
        None, description="MPA-JHU total SFR FITS; without it a.40B is empty (one warning)")
    mpa_oh: str | None = Field(
        None, description="MPA-JHU fibre metallicity FITS; without it a.40B is empty (one warning)")
    a100: str | None = Field(None, description="a100.code12.table2.190808.csv")
    xgass: str | None = Field(None, description="xGASS representative sample")
    nibles: str | None = Field(None, description="NIBLES table")
    nsa: str | None = Field(None, description="NASA-Sloan Atlas v1.0.1 (non-detections, tracers)")
    nibles_exclude_ids: tuple[str, ...] = Field(
        (), description="NIBLES ids rejected by visual inspection"
    )
    seed: int = Field(0, ge=0, description="seed of the non-detection draw")


class VacuumConfig(JobConfig):
    """``hicatalog vacuum``: delete the files of versions removed from a catalog's manifest
    longer ago than the grace period, and of publishes that never committed (their claim
    expired)."""

    catalog: str = Field(description="catalog directory or URL (holding _manifest.json)")
    grace_hours: float = Field(
        24.0, ge=0.0, description="keep the files of versions removed from the manifest for "
        "this long (a reader may still hold one); 0 deletes them now")


class ExportConfig(JobConfig):
    """``hicatalog export``: a selection of a published catalog version written (streamed) as
    a FITS binary table or a VOTable, with units, UCDs, descriptions, null values and the
    manifest's provenance (docs/export.md)."""

    catalog: str = Field(description="catalog directory or URL (holding _manifest.json)")
    out: str = Field(description="output file: .fits, .fits.gz, .vot or .xml (or give format)")
    version: int | None = Field(None, ge=1, description="a listed version (default: the current)")
    format: Literal["fits", "votable"] | None = Field(
        None, description="output format (default: by the suffix of out)")
    cone: tuple[float, float, float] | None = Field(
        None, description="RA DEC RADIUS (deg): rows within RADIUS of the position")
    box: tuple[float, float, float, float] | None = Field(
        None, description="RA_MIN RA_MAX DEC_MIN DEC_MAX (deg); RA_MIN > RA_MAX crosses RA 0")
    min_p_cnn: float | None = Field(
        None, ge=0.0, lt=1.0, description="only rows with p_cnn > this (reliable M: 0.9)")
    status: str = Field("ok", description="only rows with this status ('any': every row)")
    env_status: str = Field(
        "any", description="only rows with this env_status ('ok' for the environment columns; "
        "'any': every row)")
    columns: list[str] | None = Field(
        None, description="columns to write, comma list (default: every catalog column)")
    limit: int | None = Field(None, ge=1, description="at most this many rows (HEALPix order)")
    overwrite: bool = Field(False, description="replace an existing out file")

    @field_validator("columns", mode="before")
    @classmethod
    def _split_columns(cls, value: Any) -> Any:
        return _sample_list(value, "column name")


class DemoConfig(JobConfig):
    """``hicatalog demo``: mock -> train -> build catalog -> evaluate, no other arguments.

    The demo holds the options of the commands it runs: ``train`` (both networks),
    ``regression`` and ``pr`` (each network's), ``build`` (the catalog). The evaluation of the
    catalog has no options. The mocks' options are the demo's own (``n_train``, ``n_survey``,
    ``seed``) until the mock has an options model of its own.
    """

    out: str = Field("runs/demo", description="everything goes under this directory or URL (s3://bucket/demo)")
    n_train: int = Field(3000, ge=100, description="galaxies in the training mock")
    n_survey: int = Field(4000, ge=100, description="galaxies in the survey mock")
    n_calibration: int = Field(
        2000, ge=300, description="galaxies in the calibration mock (seed + 2): the intervals "
        "within groups and p_detect are fitted on it (hicatalog calibrate), nothing else")
    seed: int = Field(0, ge=0, description="seed of the mocks (the survey mock's is seed + 1, the "
                      "calibration mock's seed + 2)")
    population: Literal["survey", "all"] = Field(
        "survey", description="what both mocks image: 'survey' (a magnitude-limited random draw "
        "of the optical sample, detections and non-detections at their natural rate, "
        "non-detections with an ALFALFA upper limit) or 'all' (the paper's samples: ALFALFA-like "
        "detections, as many non-detections and xGASS-like galaxies; train that with "
        "--regression.likelihood detections)")
    train: TrainOptions = Field(
        default_factory=TrainOptions, description="options of both trainings (hicatalog train)")
    regression: RegressionOptions = Field(
        default_factory=lambda: RegressionOptions(ensemble=2, head="gaussian", likelihood="censored"),
        description="options of the regression network: an ensemble of 2 with the gaussian head, "
        "trained on detections and upper limits (the censored likelihood)")
    pr: PROptions = Field(default_factory=PROptions,
                          description="options of the PR network (its p_cnn is "
                          "temperature-calibrated either way)")
    build: BuildOptions = Field(
        default_factory=lambda: BuildOptions(mstar_column="log_mstar"),
        description="options of the catalog build (hicatalog build-catalog; the mock's "
        "catalogued stellar mass log_mstar gives log_mhi_pred)")


class WorkflowConfig(LabelsConfig):
    """``hicatalog workflow``: the paper's design from the published files, every step
    resumable: labels -> fetch the labelled samples and the survey-wide targets -> train the
    regression and PR networks (a.40A by default) -> build and evaluate the catalog of the
    labelled galaxies (per test sample) -> build the survey-wide catalog -> report.

    The catalog inputs and ``seed`` (the non-detection draw) are those of
    :class:`LabelsConfig`; the options of the other steps are tables: ``fetch`` (both target
    lists), ``train`` (both networks), ``regression`` and ``pr`` (each network's) and ``build``
    (both catalogs)."""

    out: str = Field(
        description="run directory or URL (s3://...): labels/, cutouts/, models/, catalogs/, "
        "evaluation/, report")
    targets: str | None = Field(
        None, description="survey-wide target list (Parquet or CSV with object_id, ra, dec, z) "
        "instead of the NSA galaxies with 0 < z < max_z")
    max_z: float = Field(
        0.06, gt=0.0, le=1.0,
        description="survey-wide targets: the NSA galaxies (nsa) with 0 < z < max_z")
    fetch: FetchOptions = Field(default_factory=FetchOptions,
                                description="options of both fetches (hicatalog fetch)")
    train: TrainOptions = Field(default_factory=TrainOptions,
                                description="options of both trainings (hicatalog train)")
    regression: RegressionOptions = Field(default_factory=RegressionOptions,
                                          description="options of the regression network")
    pr: PROptions = Field(default_factory=PROptions, description="options of the PR network")
    build: BuildOptions = Field(default_factory=BuildOptions,
                                description="options of both catalog builds (hicatalog "
                                "build-catalog)")

    @model_validator(mode="after")
    def _check_targets(self) -> WorkflowConfig:
        if self.targets is None and self.nsa is None:
            raise ValueError("the survey-wide targets need nsa (NSA galaxies with z < max_z) "
                             "or targets (a target list)")
        return self


def flag(key: str) -> str:
    """The command-line flag of a config key: ``partition_rows`` -> ``--partition-rows``, a
    key of a table ``train.max_lr`` -> ``--train.max-lr``."""
    return "--" + key.replace("_", "-")


def _table_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys are at ``path`` (``()``: ``model``; ``("train",)``: its ``train``
    table), or None when ``path`` names no table."""
    for name in path:
        model = option_tables(model).get(str(name))
        if model is None:
            return None
    return model


def _unknown_key(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """What an unknown key at ``loc`` should have been: the keys known there, and the tables
    that have a key of that name (an option of a step given at the top level)."""
    where = _table_at(model, loc[:-1])
    known = ", ".join(where.model_fields) if where is not None else ""
    tables = [f"{'.'.join(map(str, loc[:-1] + (t,)))}.{loc[-1]}"
              for t, sub in option_tables(where).items() if str(loc[-1]) in sub.model_fields] \
        if where is not None else []
    hint = f" (an option of a table: {' or '.join(tables)})" if tables else ""
    return f"unknown key{hint}; expected one of: {known}"


def format_validation_error(
    model: type[JobConfig], err: ValidationError, sources: dict[str, str]
) -> str:
    """Turn a pydantic error into lines that name each key by its whole path
    (``train.epochs``), its value, its origin (file, flag or default) and what was expected."""
    lines = [f"invalid {model.__name__} configuration:"]
    for e in err.errors():
        loc = e["loc"]
        key = ".".join(str(p) for p in loc) if loc else "<config>"
        origin = next((sources[k] for k in (key, *(".".join(map(str, loc[:i]))
                                                    for i in range(len(loc) - 1, 0, -1)))
                       if k in sources), "default")
        if e["type"] == "extra_forbidden":
            lines.append(f"  key '{key}' ({origin}): {_unknown_key(model, loc)}")
        elif e["type"] == "missing":
            lines.append(f"  key '{key}': required but not given (flag {flag(key)})")
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            got = e.get("input")
            value = "" if isinstance(got, dict) else f"got {got!r}; "
            lines.append(f"  key '{key}' ({origin}): {value}expected: {msg}")
    return "\n".join(lines)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file (a local path or a URL, ``s3://...``) into a dict; a missing or
    malformed file is a ConfigError."""
    from hicatalog import storage

    p = os.fspath(path)
    try:
        data = storage.read_bytes(p) if storage.is_file(p) else None
    except OSError as exc:
        raise ConfigError(f"config file {p!r} cannot be read: {exc}") from exc
    if data is None:
        raise ConfigError(f"config file {p!r} does not exist")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p!r} is not valid TOML: {exc}") from exc


def _flat_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of ``values`` by its whole path, tables and their keys (``train``,
    ``train.epochs``)."""
    keys = []
    for k, v in values.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys += _flat_keys(v, prefix + k + ".")
    return keys


def load_config(
    model: type[JobConfig],
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> JobConfig:
    """Build and validate a job configuration.

    Parameters
    ----------
    model: the job's config class (e.g. :class:`TrainConfig`).
    config_file: optional TOML file; its top-level keys are the model's fields, its tables
        (``[train]``) the keys of its options tables.
    overrides: values from command-line flags, by key; a key of a table by its path
        (``"train.epochs"``). They win over the file.

    Raises
    ------
    ConfigError: naming each bad key, its value, its origin (file or flag) and what was expected.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
        sources.update({k: f"from {config_file}" for k in _flat_keys(values)})
    for key, v in (overrides or {}).items():
        *tables, name = key.split(".")
        where = values
        for t in tables:
            where = where.setdefault(t, {}) if isinstance(where.get(t, {}), dict) else {}
        where[name] = v
        sources[key] = f"from flag {flag(key)}"
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(model, err, sources)) from None
