"""Image files: PIL's formats and DICOM (.dcm, read with pydicom), opened one way everywhere.

`open_image(path or bytes)` is the one opener of a picture file (training, evaluation,
predict.py, the web demo, the shift and crop tools); `image_size` reads only the header.
A file is DICOM when its name ends in .dcm / .dicom or, for other names and for bytes,
when it carries the `DICM` marker at byte 128 (the DICOM file preamble).

DICOM pixels become one 8-bit picture (HxW gray or HxWx3 RGB), in the order of the
standard's grayscale pipeline (PS3.4 N.2):
  1. the stored values through the Modality LUT: Rescale Slope / Intercept, or the Modality
     LUT Sequence (`pydicom.pixels.apply_modality_lut`);
  2. the VOI LUT: the VOI LUT Sequence, else the first Window Center / Width of the header
     (`apply_voi_lut`); its output range (the window's full output range, or the LUT's
     2^bits levels) is spread linearly over 0-255, so values outside the window clip to
     black or white. A file with no VOI in its header spreads its own min-max over 0-255;
  3. MONOCHROME1 (where a high value is dark) is inverted, so that bone is bright as in
     MONOCHROME2 and as in the PNG / JPEG X-rays of other datasets.
Colour files (RGB; YBR, which pydicom converts to RGB; PALETTE COLOR through its LUT) keep
their channels, shifted from Bits Stored to 8 bits.

Storage: prepared records hold this 8-bit picture after windowing (encoded as JPEG or PNG
like every other image), not the 12- or 16-bit values. The record format is JPEG/PNG in
8-bit RGB for every source, the augmentations and normalisers work on the 0-255 scale and
pretrained encoders expect 8-bit RGB input; windowing before the cut keeps the range the
modality chose for display in those 256 levels instead of spreading 4096 or 65536 levels
(most of them air or collimator) linearly. A model therefore sees what a reader of the
window sees; another window means preparing again (the settings are part of the file).

Refused, each with one line naming the file (`DicomError`, a `DataError`): multi-frame files,
a file without an image, compressed transfer syntaxes with no decoder installed (pydicom
decodes RLE, and JPEG baseline / extended / 2000 through Pillow; JPEG Lossless and JPEG-LS
need one of the packages the message names), pixel data that does not decode.

Header metadata (`header_metadata`): age (PatientAge `nnnD|W|M|Y` in years), sex
(PatientSex M/F/O) and view (ViewPosition: PA, AP, LL, ...), used by the sources where
their CSV has no value (a CSV value wins). No other header field is read into tables,
runs, logs or reports: patient names and IDs never leave the file.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
from PIL import Image

from multimodal.errors import DataError

DICOM_EXTENSIONS = (".dcm", ".dicom")
PIL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
HEADER_FIELDS = {"age": "PatientAge", "sex": "PatientSex", "view": "ViewPosition"}
SEX_WORDS = {"M": "male", "F": "female", "O": "other"}  # where a table or model uses words
BLANK = ("", "nan", "NaN", "None", "unknown")  # cells the header may fill (as table.parse_age)
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0, "": 1.0}


class DicomError(DataError):
    """A DICOM file that cannot be used. `status` (as an upload's HTTP answer): 415 for a file
    of a kind not read (multi-frame, compressed with no decoder, no image), 400 for a damaged
    one."""

    def __init__(self, problem: str, file: str | None = None, status: int = 400):
        super().__init__(problem, file=file)
        self.status = status


def is_dicom(source) -> bool:
    """Bytes with the `DICM` marker, or a path named .dcm/.dicom or (another name that is no
    PIL image extension) whose file has the marker."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[128:132]) == b"DICM"
    path = os.fspath(source)
    ext = os.path.splitext(path)[1].lower()
    if ext in DICOM_EXTENSIONS:
        return True
    if ext in PIL_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def open_image(source, name: str | None = None) -> Image.Image:
    """The picture in a file path or bytes: a PIL image (PIL formats are opened lazily, as
    `Image.open`); DICOM decoded to 8-bit gray ("L") or "RGB" (module docstring). Use it as
    `with open_image(path) as im:`."""
    if is_dicom(source):
        return Image.fromarray(read(source, name))
    return Image.open(_file(source))


def image_size(source, name: str | None = None) -> tuple[int, int]:
    """(width, height) from the header, nothing decoded. A DICOM file is checked as far as
    its header allows (one frame, an image, a decoder for its compression)."""
    if is_dicom(source):
        return check_header(read_dataset(source, name, pixels=False), _name(source, name))
    with open_image(source) as im:
        return im.size


def _name(source, name):
    return name or (None if isinstance(source, (bytes, bytearray)) else os.fspath(source))


def _file(source):
    """A path as it is; bytes as a file object (what PIL and pydicom open)."""
    return io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source


def read_dataset(source, name: str | None = None, pixels: bool = True):
    """The pydicom dataset of a file path or bytes (`pixels=False`: the header only)."""
    import pydicom

    name = _name(source, name)
    try:
        return pydicom.dcmread(_file(source), stop_before_pixels=not pixels)
    except FileNotFoundError:
        raise DicomError("image file not found", name) from None
    except Exception as exc:  # noqa: BLE001 - InvalidDicomError, struct/EOF errors on damage
        raise DicomError(f"not a readable DICOM file ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})", name) from None


def check_header(ds, name: str | None = None) -> tuple[int, int]:
    """(width, height) of a single-frame DICOM image whose pixel data can be decoded here;
    else a `DicomError` saying why and what to install or do."""
    frames = ds.get("NumberOfFrames")
    try:
        frames = int(frames) if frames not in (None, "") else 1
    except (TypeError, ValueError):
        frames = 1
    if frames > 1:
        raise DicomError(f"multi-frame DICOM ({frames} frames): only single-frame images are "
                         "read; save the frame to use as its own file", name, 415)
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns:
        raise DicomError("DICOM file without an image (no Rows / Columns: a report, "
                         "structured report or other non-image object?)", name, 415)
    _check_decoder(ds, name)
    return int(columns), int(rows)


def _check_decoder(ds, name) -> None:
    from pydicom.pixels import get_decoder

    syntax = getattr(ds, "file_meta", None) and ds.file_meta.get("TransferSyntaxUID")
    if not syntax or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomError(f"compressed DICOM ({syntax.name}, {syntax}) that pydicom cannot "
                         "decode; convert it to uncompressed DICOM (e.g. gdcmconv --raw) or "
                         "PNG", name, 415) from None
    if not decoder.is_available:
        raise DicomError(f"compressed DICOM ({syntax.name}) and no decoder for it is "
                         f"installed: pip install {_packages(decoder.missing_dependencies)}",
                         name, 415)


def _packages(missing: list[str]) -> str:
    """pydicom's 'gdcm - requires gdcm>=3.0.10' lines -> 'pylibjpeg pylibjpeg-libjpeg (or:
    gdcm; or: ...)', the pylibjpeg route first (pure wheels), numpy left out."""
    options = []
    for line in missing:
        needs = line.split(" - requires ", 1)[-1]
        names = [re.split(r"[<>=!~ ]", p.strip(), maxsplit=1)[0] for p in needs.split(" and ")]
        names = [n for n in names if n and n != "numpy"]
        if names:
            options.append(" ".join(names))
    options.sort(key=lambda o: not o.startswith("pylibjpeg"))
    if not options:
        return "a pydicom pixel-data plugin"
    return options[0] + "".join(f" (or: {o})" for o in options[1:])


def read(source, name: str | None = None) -> np.ndarray:
    """A DICOM file (path or bytes) -> uint8 HxW (grayscale) or HxWx3 (colour)."""
    name = _name(source, name)
    return to_uint8(read_dataset(source, name), name)


def to_uint8(ds, name: str | None = None) -> np.ndarray:
    """The 8-bit picture of a DICOM dataset (module docstring: LUTs, windowing, inversion)."""
    check_header(ds, name)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - truncated data, decoder failures
        raise DicomError(f"DICOM pixel data does not decode ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})", name) from None
    kind = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        if kind in ("MONOCHROME1", "MONOCHROME2"):
            if arr.ndim != 2:
                raise DicomError(f"{kind} pixel data of shape {arr.shape}, not one image", name,
                                 415)
            return _gray(arr, ds, invert=kind == "MONOCHROME1")
        if kind == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
            bits = 8 * arr.dtype.itemsize
        else:
            bits = int(ds.get("BitsStored") or 8)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise DicomError(f"{kind} pixel data of shape {arr.shape}, not one colour image",
                             name, 415)
        return _colour(arr, bits)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - bad LUTs, windows of width 0, ...
        raise DicomError(f"DICOM {kind} pixels cannot be displayed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})", name) from None


def _voi_range(ds) -> tuple[float, float] | None:
    """The output range of the VOI transform `apply_voi_lut` will apply (the same choice: the
    VOI LUT Sequence first, then the window), or None when the header has no VOI."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return 0.0, float(2 ** int(seq[0].LUTDescriptor[2]) - 1)
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    if ds.get("ModalityLUTSequence"):  # the range pydicom's apply_windowing maps onto
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        lo, hi = -float(2 ** (int(ds.BitsStored) - 1)), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return lo, hi


def _gray(arr: np.ndarray, ds, invert: bool) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(arr, ds)
    window = _voi_range(ds)
    if window is not None:
        if ds.get("VOILUTSequence") and values.dtype.kind == "f":
            values = np.rint(values).astype(np.int64)  # a LUT is indexed by integers
        values = apply_voi_lut(values, ds)
        lo, hi = window
    else:  # no display window in the header: the image's own range
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    values = np.nan_to_num(np.asarray(values, np.float64), nan=lo)
    scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def _colour(arr: np.ndarray, bits: int) -> np.ndarray:
    arr = np.asarray(arr)
    if bits > 8:
        arr = arr.astype(np.int64) >> (bits - 8)
    return np.clip(arr, 0, 255).astype(np.uint8)


# -- header metadata ----------------------------------------------------------------------------

def parse_age(text) -> float | None:
    """A DICOM age string (`045Y`, `006M`, `003W`, `010D`; a bare number is years) in years,
    or None when blank or not an age."""
    match = _AGE.match(str(text or ""))
    if not match:
        return None
    return round(int(match.group(1)) * _UNITS[match.group(2).upper()], 4)


def header_metadata(source) -> dict:
    """{"age": years, "sex": "M"|"F"|"O", "view": e.g. "PA"} from a DICOM file's header, each
    None when absent, blank or not readable. Nothing else of the header is returned."""
    out = dict.fromkeys(HEADER_FIELDS)
    try:
        import pydicom

        ds = pydicom.dcmread(_file(source), stop_before_pixels=True,
                             specific_tags=list(HEADER_FIELDS.values()))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the image checks
        return out
    out["age"] = parse_age(ds.get("PatientAge"))
    for field in ("sex", "view"):
        value = str(ds.get(HEADER_FIELDS[field]) or "").strip().upper()
        out[field] = value or None
    return out


def fill_from_headers(frame, columns, file=None):
    """Cells of the metadata `columns` named age / sex / view that are blank (or whose column
    the CSV lacks) filled, as text, from the headers of the rows' DICOM images (column
    `image_path`); a CSV value wins over the header. Sex is written as the CSV's other cells
    write it: M / F / O, or male / female / other when they are words. A column absent from
    the CSV is a `DataError` unless some row's image is DICOM (then rows without a header
    value stay blank)."""
    wanted = [c for c in columns if c in HEADER_FIELDS]
    absent = [c for c in columns if c not in frame.columns]
    if not wanted and not absent:
        return frame
    frame = frame.copy()
    for column in absent:
        frame[column] = ""
    blank = {c: frame[c].astype(str).str.strip().isin(BLANK) for c in wanted}
    need = np.zeros(len(frame), bool)
    for mask in blank.values():
        need |= mask.to_numpy()
    dicom_rows = np.zeros(len(frame), bool)
    if need.any():
        paths = frame["image_path"].to_numpy()
        dicom_rows[need] = [is_dicom(p) for p in paths[need]]
    unfillable = [c for c in absent if c not in HEADER_FIELDS or not dicom_rows.any()]
    if unfillable:
        raise DataError(f"missing required column(s) {unfillable}; found "
                        f"{[c for c in frame.columns if c not in absent and c != '_line']}",
                        file, hint=None if set(unfillable) - set(HEADER_FIELDS) else
                        "age, sex and view come from the DICOM headers only when the images "
                        "are DICOM files")
    words = "sex" in blank and bool(set(SEX_WORDS.values()) & set(
        frame.loc[~blank["sex"], "sex"].astype(str).str.strip().str.lower()))
    for i in np.flatnonzero(dicom_rows):
        header = header_metadata(frame["image_path"].iat[i])
        for column in wanted:
            value = header[column]
            if not blank[column].iat[i] or value is None:
                continue
            if column == "age":
                value = f"{value:g}"
            elif column == "sex" and words:
                value = SEX_WORDS.get(value, value)
            frame.iloc[i, frame.columns.get_loc(column)] = value
    return frame
