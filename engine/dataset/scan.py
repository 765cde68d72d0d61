"""scan_dataset: from a folder of photos to a validated, split ScanReport.

Two layouts are understood: one sub-folder per class (split here, after validation, so that only
usable files are counted), or ``train/``, ``val/`` and optional ``test/`` folders used as given.
Photos excluded in the dataset's ``.transfer-studio/excluded.json`` are left out before decoding and listed.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.dataset_folder import dataset_root
from engine.dataset.exclusions import ExcludedPhoto, read_exclusions
from engine.dataset.report import SPLITS, ImageItem, ScanReport, SkippedFile
from engine.dataset.split import stratified_split
from engine.dataset.validate import (
    DatasetError,
    check_class_counts,
    content_hash,
    decode_and_hash,
    decode_in_parallel,
    group_copies,
    imbalance_warning,
    leakage_warning,
    leaked_pairs,
    mixed_class_warning,
)
from engine.errors import BadInputError
from engine.events import EventSink, Progress, WarningEvent, ignore_event
from engine.images import ImageLoadError, is_image_path

SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True, slots=True)
class _FoundFile:
    path: str
    class_name: str
    split: str | None  # given by a pre-split layout, else decided after validation


@dataclass
class _Listing:
    layout: str
    class_names: set[str] = field(default_factory=set)
    files: list[_FoundFile] = field(default_factory=list)
    split_folders: set[str] = field(default_factory=set)
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored_count: int = 0
    warnings: list[str] = field(default_factory=list)


def scan_dataset(
    root: Path | str,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    cache: DecodedImageCache | None = None,
    workers: int | None = None,
    on_event: EventSink = ignore_event,
    control: RunControl | None = None,
) -> ScanReport:
    """List, decode and split a dataset; raise DatasetError when it cannot be trained on.

    With a ``cache``, validation decodes through it, so training never decodes a photo a second time.
    """
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise BadInputError(
            f"invalid split fractions val={val_fraction}, test={test_fraction}: "
            "val must be in (0, 1), test in [0, 1), and together below 1"
        )
    root = dataset_root(root)
    listing = _list_dataset(root, on_event=on_event, control=control)
    excluded = _leave_out_excluded(root, listing)
    decode = cache.put_from_path if cache is not None else decode_and_hash
    outcomes = decode_in_parallel(
        [Path(found.path) for found in listing.files],
        decode,
        phase="validating",
        on_event=on_event,
        control=control,
        workers=workers,
    )
    usable: list[_FoundFile] = []
    hashes: dict[str, str] = {}
    skipped = list(listing.skipped)
    for found, outcome in zip(listing.files, outcomes, strict=True):
        if isinstance(outcome, ImageLoadError):
            skipped.append(SkippedFile(outcome.path, outcome.reason))
        else:
            usable.append(found)
            hashes[found.path] = outcome
    class_counts = Counter(dict.fromkeys(listing.class_names, 0))
    class_counts.update(found.class_name for found in usable)
    check_class_counts(root, class_counts)

    warnings = list(listing.warnings)
    split_of = _assign_splits(root, listing, usable, hashes, val_fraction, test_fraction, seed, warnings)
    classes = tuple(sorted(listing.class_names))
    label_of = {name: label for label, name in enumerate(classes)}
    items = sorted(
        (ImageItem(found.path, label_of[found.class_name], split_of[found.path]) for found in usable),
        key=lambda item: (SPLITS.index(item.split), item.label, item.path),
    )
    copies = group_copies(hashes)
    report = ScanReport(
        root=str(root),
        layout=listing.layout,
        classes=classes,
        items=tuple(items),
        skipped=tuple(skipped),
        ignored_count=listing.ignored_count,
        leakage=tuple(leaked_pairs(copies, split_of)),
        excluded=tuple(excluded),
        given_splits=tuple(split for split in SPLITS if split in listing.split_folders),
    )
    class_of = {found.path: found.class_name for found in usable}
    warnings += [
        message
        for message in (
            leakage_warning(report.leakage),
            mixed_class_warning(copies, class_of),
            imbalance_warning(report.counts["train"]),
        )
        if message is not None
    ]
    for message in warnings:
        on_event(WarningEvent(message))
    return replace(report, warnings=tuple(warnings))


def _list_dataset(root: Path, *, on_event: EventSink, control: RunControl | None) -> _Listing:
    """Find every candidate image, its class and (in a pre-split layout) its split, without decoding."""
    listing = _Listing(layout="class-folders")
    folders = _read_folder(root, listing)
    split_folders = _split_folders(folders)
    class_folders: list[tuple[Path, str | None]] = [(folder, None) for folder in folders]
    if split_folders:
        listing.layout = "pre-split"
        class_folders = []
        for folder in folders:
            if folder not in split_folders:
                listing.warnings.append(
                    f"{folder}: ignored; a pre-split dataset uses only train/, val/ and test/"
                )
                continue
            split = SPLIT_FOLDER_NAMES[folder.name.lower()]
            listing.split_folders.add(split)
            class_folders += [(class_folder, split) for class_folder in _read_folder(folder, listing)]

    for done, (class_folder, split) in enumerate(class_folders, start=1):
        if control is not None:
            control.check()
        listing.class_names.add(class_folder.name)
        for path in _files_under(class_folder, listing):
            if is_image_path(path):
                listing.files.append(_FoundFile(str(path), class_folder.name, split))
            else:
                listing.ignored_count += 1
        on_event(Progress(phase="scanning", done=done, total=len(class_folders), message=class_folder.name))
    return listing


def _split_folders(folders: list[Path]) -> list[Path]:
    """The split folders (train/, val/, test/) among a dataset's folders when they make it pre-split, else none."""
    split_folders = [folder for folder in folders if folder.name.lower() in SPLIT_FOLDER_NAMES]
    has_train = any(SPLIT_FOLDER_NAMES[folder.name.lower()] == "train" for folder in split_folders)
    return split_folders if has_train and (len(split_folders) >= 2 or len(folders) == 1) else []


def class_folder_of(root: Path, photo: Path) -> Path:
    """The class folder that holds ``photo``: the folder below ``root``, or below its split folder when pre-split."""
    parts = photo.relative_to(root).parts
    depth = 2 if _split_folders(_read_folder(root, _Listing(layout="class-folders"))) else 1
    if len(parts) <= depth:
        raise DatasetError(f"{photo}: not inside a class folder (move it into the folder of its class)")
    return root.joinpath(*parts[:depth])


def training_class_folder(root: Path, label: str) -> Path:
    """Where a new training photo of ``label`` goes: ``root/label``, or ``root/train/label`` when pre-split."""
    splits = _split_folders(_read_folder(root, _Listing(layout="class-folders")))
    train = next((folder for folder in splits if SPLIT_FOLDER_NAMES[folder.name.lower()] == "train"), root)
    return train / label


def _leave_out_excluded(root: Path, listing: _Listing) -> list[SkippedFile]:
    """Take the photos excluded in the dataset's excluded.json out of the listing; they are returned with the reason.

    A photo whose bytes changed since it was excluded is kept, with a warning: it may be a new photo that reuses the
    name, which nobody has looked at. Only excluded photos are hashed here, so this costs nothing without exclusions.
    """
    excluded_photos = read_exclusions(root).by_path()
    if not excluded_photos:
        return []
    kept, left_out = [], []
    for found in listing.files:
        photo = excluded_photos.get(Path(found.path).relative_to(root).as_posix())
        if photo is not None and _changed_since_excluded(photo, found.path):
            listing.warnings.append(f"{found.path}: excluded ({photo.reason}) but its content has changed since, so "
                                    "it is used again; exclude it again if it should stay out")
            photo = None
        if photo is None:
            kept.append(found)
        else:
            left_out.append(SkippedFile(found.path, photo.reason))
    listing.files = kept
    return left_out


def _changed_since_excluded(photo: ExcludedPhoto, path: str) -> bool:
    """Whether the file's bytes differ from the excluded photo's; a file that cannot be read stays excluded."""
    if photo.content_hash is None:
        return False
    try:
        return content_hash(path) != photo.content_hash
    except ImageLoadError:
        return False


def _read_folder(folder: Path, listing: _Listing) -> list[Path]:
    """The visible sub-folders of a dataset or split folder, sorted.

    Files beside them belong to no class: they are counted as ignored, with a warning when they are photos.
    """
    try:
        children = [child for child in folder.iterdir() if not _is_hidden(child.name)]
        is_folder = {child: child.is_dir() for child in children}
    except OSError as exc:
        raise DatasetError(
            f"{folder}: cannot read the folder ({exc.strerror or exc}); check its permissions"
        ) from exc
    folders = sorted(child for child in children if is_folder[child])
    loose = [child for child in children if not is_folder[child]]
    listing.ignored_count += len(loose)
    if images := sum(1 for path in loose if is_image_path(path)):
        listing.warnings.append(
            f"{folder}: {images} image(s) are not inside a class folder and were ignored "
            "(move them into the folder of their class)"
        )
    return folders


def _files_under(folder: Path, listing: _Listing) -> Iterable[Path]:
    """Every visible file below ``folder``, sorted; symlinked folders are not followed (no loops).

    A sub-folder that cannot be read is listed as skipped, so its photos are not silently missing.
    """

    def skip_folder(error: OSError) -> None:
        listing.skipped.append(SkippedFile(str(error.filename), f"cannot read the folder ({error.strerror})"))

    for current, dirs, files in os.walk(folder, onerror=skip_folder):
        dirs[:] = sorted(name for name in dirs if not _is_hidden(name))
        for name in sorted(files):
            if not _is_hidden(name):
                yield Path(current, name)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _assign_splits(
    root: Path,
    listing: _Listing,
    usable: list[_FoundFile],
    hashes: Mapping[str, str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    warnings: list[str],
) -> dict[str, str]:
    """Split class folders here; keep a pre-split layout's splits, only filling a missing val or test."""
    if listing.layout == "class-folders":
        return stratified_split(
            _copy_units(usable, hashes), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    split_of: dict[str, str] = {found.path: found.split for found in usable if found.split is not None}
    carve_val = val_fraction if "val" not in listing.split_folders else 0.0
    carve_test = test_fraction if "test" not in listing.split_folders else 0.0
    if carve_val or carve_test:
        train = [found for found in usable if found.split == "train"]
        split_of.update(
            stratified_split(
                _copy_units(train, hashes), val_fraction=carve_val, test_fraction=carve_test, seed=seed
            )
        )
        carved = " and ".join(name for name, share in (("val", carve_val), ("test", carve_test)) if share)
        warnings.append(
            f"{root}: no {carved} folder; part of each class in train/ was set aside for {carved}"
        )
    per_split = Counter((split_of[found.path], found.class_name) for found in usable)
    for name in sorted(listing.class_names):
        if per_split["train", name] == 0:
            raise DatasetError(
                f"{root}: class {name!r} has no usable training images (add photos of it to the training "
                "folder, or remove the class from every split)"
            )
        if per_split["val", name] == 0:
            warnings.append(
                f"{root}: class {name!r} has no validation images, so its accuracy cannot be measured"
            )
    return split_of


def _copy_units(files: Iterable[_FoundFile], hashes: Mapping[str, str]) -> dict[str, list[list[str]]]:
    """Per class, groups of byte-identical files, so that the split keeps copies on one side.

    A class whose files are all copies of one photo is split file by file instead (the copies are
    then reported as leakage), because every class needs an image in both train and val.
    """
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for found in files:
        by_class[found.class_name][hashes[found.path]].append(found.path)
    units: dict[str, list[list[str]]] = {}
    for name, groups in by_class.items():
        units[name] = (
            list(groups.values())
            if len(groups) >= 2
            else [[path] for group in groups.values() for path in group]
        )
    return units
