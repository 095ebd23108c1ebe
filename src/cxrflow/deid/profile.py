"""The Basic Application Level Confidentiality Profile with the options this project uses.

`Deidentifier.apply(ds)` rewrites a pydicom Dataset in place, at every depth, by the rules of
Table E.1-1 (see `table.py`), and returns a `DeidReport` that says which attributes were
removed, emptied, replaced, shifted or cleaned, never with their values.

Beyond the table, and by the profile's own requirements:
- every private element, curve (50xx) and overlay (60xx) group is removed;
- every UID that is not a registered DICOM UID (SOP classes, transfer syntaxes, coding schemes)
  is replaced by a keyed `2.25.` UID, so references between files stay consistent;
- every DA/DT/TM at any depth is shifted by the patient's keyed offset (Retain Longitudinal
  Temporal Information with Modified Dates), or emptied when that option is off;
- as a safety net, a person name (VR PN) that the table does not list is emptied;
- PatientID and PatientName become the subject's keyed pseudonym (the profile's Z allows a
  dummy value), so de-identified files of one patient still group together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from cxrflow import __version__
from cxrflow.deid.dates import (
    DateShift,
    shift_date,
    shift_datetime,
    shift_time,
)
from cxrflow.deid.scrub import TextScrubber, identifier_tokens
from cxrflow.deid.table import Action, ProfileTable, load_profile_table
from cxrflow.keys import SecretKey

log = logging.getLogger(__name__)

PROFILE_NAME: Final = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
PROFILE_NAME_SHORT: Final = "DICOM PS3.15 E.1 Basic Profile"
_DCM = "DCM"
_BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
_OPTION_CODES: Final[dict[str, tuple[str, str]]] = {
    "rtn_pat_chars": ("113108", "Retain Patient Characteristics Option"),
    "rtn_long_modif_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "clean_desc": ("113105", "Clean Descriptors Option"),
}
_TEXT_VRS: Final = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "AE"})
_DATE_VRS: Final = frozenset({"DA", "DT", "TM"})
_DEID_TAGS: Final = frozenset(
    {Tag(0x0012, 0x0062), Tag(0x0012, 0x0063), Tag(0x0012, 0x0064), Tag(0x0028, 0x0303)}
)
_PATIENT_ID = Tag(0x0010, 0x0020)
_PATIENT_NAME = Tag(0x0010, 0x0010)


@dataclass(frozen=True)
class DeidOptions:
    """Which profile options are applied (all three by default: the evaluation needs them)."""

    retain_patient_characteristics: bool = True
    retain_longitudinal_modified_dates: bool = True
    clean_descriptors: bool = True

    @property
    def columns(self) -> frozenset[str]:
        """The Table E.1-1 option columns that are in force."""
        cols = set()
        if self.retain_patient_characteristics:
            cols.add("rtn_pat_chars")
        if self.retain_longitudinal_modified_dates:
            cols.add("rtn_long_modif_dates")
        if self.clean_descriptors:
            cols.add("clean_desc")
        return frozenset(cols)

    @property
    def codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes of the profile and each option used."""
        return [_BASIC_CODE] + [_OPTION_CODES[c] for c in sorted(self.columns)]

    def describe(self) -> str:
        """A one-line, PHI-free description of the profile and options (for tags and cards)."""
        return "; ".join([PROFILE_NAME] + [meaning for _, meaning in self.codes[1:]])


@dataclass
class DeidReport:
    """What happened to one file's attributes: paths only, never values."""

    removed: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    dummied: list[str] = field(default_factory=list)
    uids_replaced: list[str] = field(default_factory=list)
    shifted: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}


def _name(elem: DataElement) -> str:
    tag = elem.tag
    if tag.is_private or not elem.keyword:
        return f"({tag.group:04X},{tag.element:04X})"
    return elem.keyword


def _is_registered_uid(value: str) -> bool:
    """True for UIDs of the DICOM registry (SOP classes, transfer syntaxes, ...)."""
    uid = UID(value)
    return uid.name != str(uid)


def _is_overlay_or_curve(tag: BaseTag) -> bool:
    return 0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF


def _dummy(vr: str) -> Any:
    return {
        "PN": "ANONYMOUS",
        "DA": "19000101",
        "TM": "000000",
        "DT": "19000101000000",
        "AS": "000D",
        "IS": "0",
        "DS": "0",
        "CS": "ANONYMIZED",
        "AE": "ANONYMIZED",
    }.get(vr, "ANONYMIZED" if vr in _TEXT_VRS else None)


class Deidentifier:
    """De-identifies datasets with one key and one set of options."""

    def __init__(
        self,
        key: SecretKey,
        options: DeidOptions | None = None,
        table: ProfileTable | None = None,
    ) -> None:
        self.key = key
        self.options = options or DeidOptions()
        self.table = table or load_profile_table()
        self._enabled = self.options.columns

    # -- keyed derivations -------------------------------------------------------------------
    def subject_pseudonym(self, patient_id: str) -> str:
        return self.key.pseudonym("subject", patient_id.strip())

    def date_shift(self, patient_id: str) -> DateShift:
        """The patient's offset: 1 to 10 years into the past, plus a time-of-day offset."""
        d = self.key.digest("dateshift", patient_id.strip())
        days = 365 + int.from_bytes(d[:4], "big") % (3650 - 365)
        return DateShift(days=-days, seconds=int.from_bytes(d[4:8], "big") % 86400)

    # -- the walk ----------------------------------------------------------------------------
    def apply(self, ds: Dataset) -> DeidReport:
        """De-identify `ds` in place (and its file meta) and return the audit."""
        patient_id = str(ds.get("PatientID", "") or "")
        shift = self.date_shift(patient_id)
        scrubber = TextScrubber(identifier_tokens(self._identifying_values(ds)))
        report = DeidReport()
        self._walk(ds, "", shift, scrubber, report)

        pseudonym = self.subject_pseudonym(patient_id)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        # LO holds 64 characters; the attribute is multi-valued, so one value per part.
        ds.DeidentificationMethod = (
            [PROFILE_NAME_SHORT]
            + [m for _, m in self.options.codes[1:]]
            + [f"cxrflow {__version__}"]
        )
        codes = []
        for value, meaning in self.options.codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = _DCM
            item.CodeMeaning = meaning
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.retain_longitudinal_modified_dates else "REMOVED"
        )
        self._fix_file_meta(ds)
        return report

    def _fix_file_meta(self, ds: Dataset) -> None:
        meta: FileMetaDataset | None = getattr(ds, "file_meta", None)
        if meta is None:
            return
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for tag in (Tag(0x0002, 0x0016), Tag(0x0002, 0x0017), Tag(0x0002, 0x0018)):
            # Source/Sending/Receiving AE titles name the hospital's systems.
            if tag in meta:
                del meta[tag]
        if hasattr(ds, "preamble") and ds.preamble is not None:
            ds.preamble = b"\x00" * 128

    def _identifying_values(self, ds: Dataset) -> Iterator[str]:
        """String values the profile judges identifying (and all private strings), any depth."""
        for elem in _iter_elements(ds):
            if elem.VR == "SQ" or elem.value in (None, ""):
                continue
            if elem.tag.is_private:
                if elem.VR in _TEXT_VRS or elem.VR in {"UN", "OB"}:
                    yield from _strings(elem.value)
                continue
            if elem.VR not in _TEXT_VRS:
                continue
            rule = self.table.rule_for(int(elem.tag))
            action = (
                rule.action(self._enabled)
                if rule
                else (Action.EMPTY if elem.VR == "PN" else Action.KEEP)
            )
            if action in (Action.REMOVE, Action.EMPTY, Action.DUMMY):
                yield from _strings(elem.value)

    def _walk(
        self, ds: Dataset, path: str, shift: DateShift, scrub: TextScrubber, report: DeidReport
    ) -> None:
        for tag in list(ds.keys()):
            if tag in _DEID_TAGS:
                continue
            elem = ds[tag]
            where = f"{path}{_name(elem)}"
            if tag.is_private or _is_overlay_or_curve(tag):
                del ds[tag]
                report.removed.append(where)
                continue
            rule = self.table.rule_for(int(tag))
            action = rule.action(self._enabled) if rule else self._unlisted_action(elem)
            self._apply(ds, elem, action, where, shift, scrub, report)

    def _unlisted_action(self, elem: DataElement) -> Action:
        """Attributes the table does not list: kept, except names, UIDs and dates."""
        if elem.VR == "PN":
            return Action.EMPTY
        if elem.VR == "UI":
            return Action.UID
        if elem.VR in _DATE_VRS:
            return Action.CLEAN
        return Action.KEEP

    def _apply(
        self,
        ds: Dataset,
        elem: DataElement,
        action: Action,
        where: str,
        shift: DateShift,
        scrub: TextScrubber,
        report: DeidReport,
    ) -> None:
        if elem.VR == "SQ":
            if action is Action.REMOVE:
                del ds[elem.tag]
                report.removed.append(where)
            elif action is Action.EMPTY:
                elem.value = Sequence()
                report.emptied.append(where)
            else:  # keep, clean, dummy or UID: keep the structure, de-identify the items
                for i, item in enumerate(elem.value):
                    self._walk(item, f"{where}[{i}].", shift, scrub, report)
            return
        if elem.VR in _DATE_VRS and action in (
            Action.CLEAN,
            Action.KEEP,
            Action.DUMMY,
            Action.EMPTY,
        ):
            if action is Action.EMPTY or not self.options.retain_longitudinal_modified_dates:
                elem.value = ""
                report.emptied.append(where)
                return
            self._shift_element(elem, where, shift, report)
            return
        if action is Action.REMOVE:
            del ds[elem.tag]
            report.removed.append(where)
        elif action is Action.EMPTY:
            elem.value = "" if elem.VR in _TEXT_VRS or elem.VR in {"IS", "DS", "UI", "AS"} else None
            report.emptied.append(where)
        elif action is Action.DUMMY:
            if elem.VR == "UI":
                self._replace_uids(elem, where, report)
                return
            dummy = _dummy(elem.VR)
            if dummy is None:
                del ds[elem.tag]
                report.removed.append(where)
            else:
                elem.value = dummy
                report.dummied.append(where)
        elif action is Action.UID:
            if elem.VR == "UI":
                self._replace_uids(elem, where, report)
            else:
                elem.value = ""
                report.emptied.append(where)
        elif action is Action.CLEAN and elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            elem.value = _map_strings(elem.value, scrub)
            report.cleaned.append(where)
        # Action.KEEP: nothing to do.

    def _replace_uids(self, elem: DataElement, where: str, report: DeidReport) -> None:
        if elem.value in (None, ""):
            return

        def one(uid: str) -> str:
            return uid if _is_registered_uid(uid) else self.key.uid(uid)

        new = _map_strings(elem.value, one)
        if new != _map_strings(elem.value, str):
            elem.value = new
            report.uids_replaced.append(where)

    def _shift_element(
        self, elem: DataElement, where: str, shift: DateShift, report: DeidReport
    ) -> None:
        fn = {"DA": shift_date, "DT": shift_datetime, "TM": shift_time}[elem.VR]
        if elem.value in (None, ""):
            return
        failed = False

        def one(value: str) -> str:
            nonlocal failed
            out = fn(str(value), shift)
            if out is None:
                failed = True
                return ""
            return out

        elem.value = _map_strings(elem.value, one)
        if failed:
            elem.value = ""
            report.emptied.append(where)
        else:
            report.shifted.append(where)


def _iter_elements(ds: Dataset) -> Iterator[DataElement]:
    for tag in list(ds.keys()):
        elem = ds[tag]
        yield elem
        if elem.VR == "SQ" and elem.value:
            for item in elem.value:
                yield from _iter_elements(item)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, (list, MultiValue)):
        for v in value:
            yield str(v)
    elif isinstance(value, bytes):
        text = value.decode("latin-1", errors="ignore").strip("\x00 ")
        if text.isprintable() and text:
            yield text
    else:
        yield str(value)


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, (list, MultiValue)):
        return [fn(str(v)) for v in value]
    return fn(str(value))
