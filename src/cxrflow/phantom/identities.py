"""Fake but realistic identities: patients, staff, institutions and identifiers (all invented)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Surnames that are unlikely to occur as ordinary words in DICOM text, so that a de-identification
# check that searches for them has no false positives.
SURNAMES: tuple[str, ...] = (
    "Abernathy",
    "Okonkwo",
    "Lindqvist",
    "Fitzgerald",
    "Castellano",
    "Nakamura",
    "Oyelaran",
    "Vasquez",
    "Kowalczyk",
    "Haraldsen",
    "McAllister",
    "Papadakis",
    "Thorvaldsen",
    "Ivanova",
    "Delacroix",
    "Whitfield",
    "Rosenberg",
    "Achterberg",
    "Gallagher",
    "Moreau",
    "Brennan",
    "Szabo",
    "Tanaka",
    "Eriksson",
    "Fernandes",
    "Hoffmann",
    "Kaczmarek",
    "Lombardi",
    "Nwosu",
    "Petrovic",
    "Quintero",
    "Rasmussen",
    "Schneider",
    "Underwood",
    "Villanueva",
    "Wojcik",
    "Yamamoto",
    "Zielinski",
    "Beaumont",
    "Chakraborty",
    "Donnelly",
    "Esposito",
    "Fairbanks",
    "Gutierrez",
    "Holloway",
    "Iglesias",
    "Jablonski",
    "Kirkpatrick",
    "Laurent",
    "Mbeki",
    "Novak",
    "Ostrowski",
    "Pemberton",
    "Ramanathan",
    "Sorensen",
    "Trujillo",
    "Ueda",
    "Vukovic",
    "Westbrook",
    "Xiong",
    "Yildirim",
    "Zamora",
    "Ashworth",
    "Blackwood",
    "Carrington",
    "Dunleavy",
    "Ellsworth",
    "Fontaine",
    "Grimaldi",
    "Hargreaves",
    "Ingersoll",
    "Jovanovic",
)
MALE_NAMES: tuple[str, ...] = (
    "Alistair",
    "Benedikt",
    "Cornelius",
    "Dmitri",
    "Emeka",
    "Fabrizio",
    "Gunnar",
    "Horatio",
    "Ignatius",
    "Joaquin",
    "Kenji",
    "Leopold",
    "Mathias",
    "Nikolai",
    "Oluwaseun",
    "Percival",
    "Rafferty",
    "Sebastien",
    "Thaddeus",
    "Ulrich",
    "Valentin",
    "Wendell",
    "Yusuf",
    "Zoltan",
    "Anselm",
    "Bartholomew",
    "Cedric",
    "Desmond",
    "Evander",
    "Florian",
)
FEMALE_NAMES: tuple[str, ...] = (
    "Annelise",
    "Beatrix",
    "Cordelia",
    "Dagmar",
    "Eleonora",
    "Francesca",
    "Genevieve",
    "Henrietta",
    "Ingrid",
    "Jacqueline",
    "Katarzyna",
    "Ludmila",
    "Marguerite",
    "Nkechi",
    "Octavia",
    "Philippa",
    "Rosalind",
    "Svetlana",
    "Theodora",
    "Ursula",
    "Valentina",
    "Wilhelmina",
    "Ximena",
    "Yolanda",
    "Zenobia",
    "Apolline",
    "Bernadette",
    "Clementine",
    "Dorothea",
    "Esmeralda",
)
STREETS: tuple[str, ...] = (
    "Harbour Road",
    "Linden Avenue",
    "Quarry Lane",
    "Mill Street",
    "Orchard Close",
    "Beacon Hill",
    "Kingfisher Way",
    "Chapel Row",
    "Foundry Street",
    "Meadowbank Drive",
)
TOWNS: tuple[str, ...] = (
    "Northfield",
    "Ashby Vale",
    "Westmoor",
    "Kingsbridge",
    "Fallowmere",
    "Redcliffe",
    "Brackenridge",
    "Sallowby",
)
HOSPITAL_STEMS: tuple[str, ...] = (
    "St. Aldhelm",
    "Fallowmere",
    "Kingsbridge Royal",
    "Brackenridge",
    "Our Lady of Sallowby",
    "Westmoor Community",
    "Redcliffe University",
)
HOSPITAL_KINDS: tuple[str, ...] = ("General Hospital", "Medical Center", "Infirmary", "Hospital")


@dataclass(frozen=True)
class Person:
    """A person's name; DICOM PN forms are derived from it."""

    family: str
    given: str
    middle: str = ""
    prefix: str = ""

    @property
    def pn(self) -> str:
        """DICOM PN: FAMILY^GIVEN^MIDDLE^PREFIX, trailing empty components dropped."""
        parts = [self.family.upper(), self.given.upper(), self.middle.upper(), self.prefix.upper()]
        while parts and not parts[-1]:
            parts.pop()
        return "^".join(parts)

    @property
    def short_pn(self) -> str:
        """FAMILY^GIVEN, as RIS free text usually quotes it."""
        return f"{self.family.upper()}^{self.given.upper()}"

    @property
    def comma_form(self) -> str:
        """FAMILY, GIVEN, as PACS private tags often carry it."""
        return f"{self.family.upper()}, {self.given.upper()}"

    @property
    def natural_form(self) -> str:
        """Given Family, as a technologist types it in a comment."""
        return f"{self.given} {self.family}"

    def forms(self) -> list[str]:
        """The PN form and the family and given names (what any PN element carries)."""
        # A middle initial alone is not listed: one letter would match everything.
        return list(dict.fromkeys([self.pn, self.family.upper(), self.given.upper()]))


@dataclass(frozen=True)
class Institution:
    """A hospital with its address and one X-ray room (station and detector serial)."""

    name: str
    address: str
    department: str
    station_name: str
    device_serial: str
    manufacturer: str
    model: str
    timezone: str  # "+0100" style offset used in AcquisitionDateTime
    issuer: str  # IssuerOfPatientID of its MRNs


@dataclass(frozen=True)
class PatientIdentity:
    """The identifying data of one subject, constant across studies."""

    person: Person
    patient_id: str
    issuer: str
    mrn: str
    other_ids: tuple[tuple[str, str], ...]  # (id, issuer)
    address: str
    phone: str


def _pick(rng: np.random.Generator, seq: tuple[str, ...]) -> str:
    return seq[int(rng.integers(len(seq)))]


def make_address(rng: np.random.Generator) -> str:
    """A street address with a UK-style postcode."""
    letters = "ABCDEFGHJKLMNPRSTUVWXY"
    code = (
        f"{letters[int(rng.integers(len(letters)))]}{letters[int(rng.integers(len(letters)))]}"
        f"{int(rng.integers(1, 20))} {int(rng.integers(1, 10))}"
        f"{letters[int(rng.integers(len(letters)))]}{letters[int(rng.integers(len(letters)))]}"
    )
    return f"{int(rng.integers(1, 240))} {_pick(rng, STREETS)}, {_pick(rng, TOWNS)} {code}"


def make_person(rng: np.random.Generator, sex: str, *, doctor: bool = False) -> Person:
    """A random person of the given sex ("M"/"F")."""
    given = _pick(rng, MALE_NAMES if sex == "M" else FEMALE_NAMES)
    middle = "" if rng.random() < 0.6 else chr(ord("A") + int(rng.integers(26)))
    return Person(_pick(rng, SURNAMES), given, middle, "DR" if doctor else "")


def make_institutions(rng: np.random.Generator, n: int) -> list[Institution]:
    """`n` distinct hospitals, each with one radiography room."""
    stems = list(HOSPITAL_STEMS)
    order = rng.permutation(len(stems))[:n]
    vendors = (
        ("Acme Imaging", "RadiaDR 4000"),
        ("Helix Medical", "CR-Compact 2"),
        ("Nordlys Systems", "FlatScan XR"),
    )
    out = []
    for k, i in enumerate(order):
        vendor, model = vendors[k % len(vendors)]
        out.append(
            Institution(
                name=f"{stems[int(i)]} {_pick(rng, HOSPITAL_KINDS)}",
                address=make_address(rng),
                department="Radiology",
                station_name=f"XR{int(rng.integers(1, 9))}-{_pick(rng, TOWNS)[:4].upper()}"
                f"{int(rng.integers(10, 99))}",
                device_serial=f"SN{int(rng.integers(10**6, 10**7))}",
                manufacturer=vendor,
                model=model,
                timezone=("+0000", "+0100", "+0200", "-0500")[int(rng.integers(4))],
                issuer=f"{stems[int(i)].split()[-1].upper()}_MRN",
            )
        )
    return out


def make_patient(rng: np.random.Generator, sex: str, home: Institution) -> PatientIdentity:
    """A subject's identity: name, enterprise ID, MRN, older IDs, address and phone."""
    person = make_person(rng, sex)
    return PatientIdentity(
        person=person,
        patient_id=f"PID{int(rng.integers(10**7, 10**8))}",
        issuer="REGIONAL_EMPI",
        mrn=f"MRN{int(rng.integers(10**8, 10**9))}",
        other_ids=(
            (f"{int(rng.integers(10**9, 10**10))}", "NATIONAL_HEALTH_ID"),
            (f"OLD{int(rng.integers(10**6, 10**7))}", home.issuer),
        ),
        address=make_address(rng),
        phone=f"+44 {int(rng.integers(1000, 9999))} {int(rng.integers(100000, 999999))}",
    )
