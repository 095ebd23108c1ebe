"""Tiny synthetic metadata files in each dataset's published column layout (no real data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cxrflow.datasets.common import CHEXPERT_OBSERVATIONS
from cxrflow.datasets.rle import rle_encode


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def chexpert_values(**given: float | None) -> dict[str, float | None]:
    """All 14 observations blank except the ones given (keys with spaces as underscores)."""
    values: dict[str, float | None] = dict.fromkeys(CHEXPERT_OBSERVATIONS)
    for k, v in given.items():
        name = k.replace("_", " ")
        assert name in values, name
        values[name] = v
    return values


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough.

 FINDINGS:

 There is a small left pleural effusion.  No pneumothorax.
 The heart size is normal.

 IMPRESSION:

 Small left effusion.
"""


def mimic(root: Path) -> Path:
    write_csv(
        root / "mimic-cxr-2.0.0-metadata.csv",
        [
            {
                "dicom_id": "d1",
                "subject_id": 10000032,
                "study_id": 50414267,
                "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                "ViewPosition": "PA",
                "Rows": 3056,
                "Columns": 2544,
                "StudyDate": 21800506,
                "StudyTime": 213014.531,
            },
            {
                "dicom_id": "d2",
                "subject_id": 10000032,
                "study_id": 50414267,
                "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                "ViewPosition": "LATERAL",
                "Rows": 3056,
                "Columns": 2544,
                "StudyDate": 21800506,
                "StudyTime": 213014.531,
            },
            {
                "dicom_id": "d3",
                "subject_id": 10000764,
                "study_id": 57375967,
                "PerformedProcedureStepDescription": "CHEST (PORTABLE AP)",
                "ViewPosition": "AP",
                "Rows": 2705,
                "Columns": 2539,
                "StudyDate": 21321015,
                "StudyTime": 85510.0,
            },
            {
                "dicom_id": "d4",
                "subject_id": 10000898,
                "study_id": 50771383,
                "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                "ViewPosition": "",
                "Rows": 2000,
                "Columns": 2000,
                "StudyDate": 21320101,
                "StudyTime": 1.0,
            },
        ],
    )
    write_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv",
        [
            {
                "subject_id": 10000032,
                "study_id": 50414267,
                **chexpert_values(
                    Pleural_Effusion=1.0, Pneumothorax=0.0, Cardiomegaly=-1.0, Atelectasis=1.0
                ),
            },
            {
                "subject_id": 10000764,
                "study_id": 57375967,
                **chexpert_values(Lung_Opacity=1.0, Support_Devices=1.0, Edema=-1.0),
            },
            # study 50771383 has no CheXpert row
        ],
    )
    write_csv(
        root / "mimic-cxr-2.0.0-split.csv",
        [
            {"dicom_id": "d1", "study_id": 50414267, "subject_id": 10000032, "split": "train"},
            {"dicom_id": "d2", "study_id": 50414267, "subject_id": 10000032, "split": "train"},
            {"dicom_id": "d3", "study_id": 57375967, "subject_id": 10000764, "split": "validate"},
            {"dicom_id": "d4", "study_id": 50771383, "subject_id": 10000898, "split": "test"},
        ],
    )
    report = root / "files" / "p10" / "p10000032" / "s50414267.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(MIMIC_REPORT)
    # study 57375967's report has no FINDINGS section
    other = root / "files" / "p10" / "p10000764" / "s57375967.txt"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(" FINAL REPORT\n IMPRESSION:  Lines and tubes in place.\n")
    return root


def chexpert(root: Path) -> Path:
    base = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
    cols = base + list(CHEXPERT_OBSERVATIONS)
    write_csv(
        root / "train.csv",
        [
            {
                "Path": "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
                "Sex": "Female",
                "Age": 68,
                "Frontal/Lateral": "Frontal",
                "AP/PA": "AP",
                **chexpert_values(No_Finding=1.0),
            },
            {
                "Path": "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg",
                "Sex": "Female",
                "Age": 87,
                "Frontal/Lateral": "Frontal",
                "AP/PA": "AP",
                **chexpert_values(
                    Cardiomegaly=-1.0, Lung_Opacity=1.0, Pleural_Effusion=0.0, Fracture=1.0
                ),
            },
            {
                "Path": "CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg",
                "Sex": "Female",
                "Age": 87,
                "Frontal/Lateral": "Lateral",
                "AP/PA": None,
                **chexpert_values(
                    Cardiomegaly=-1.0, Lung_Opacity=1.0, Pleural_Effusion=0.0, Fracture=1.0
                ),
            },
        ],
        cols,
    )
    write_csv(
        root / "valid.csv",
        [
            {
                "Path": "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
                "Sex": "Male",
                "Age": 73,
                "Frontal/Lateral": "Frontal",
                "AP/PA": "PA",
                **{o: 0.0 for o in CHEXPERT_OBSERVATIONS},
                "Pneumothorax": 1.0,
            },
        ],
        cols,
    )
    return root


def chexpert_release(root: Path, patients: int, seed: int = 0) -> Path:
    """A CheXpert-v1.0-small release with images: `patients` x 2 frontal studies in train.csv
    and a quarter as many patients in valid.csv; about 30% positives per observation, and a
    bright block where Cardiomegaly is positive so that a probe has something to find."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    cols = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBSERVATIONS]

    def rows(split: str, first: int, n: int) -> list[dict]:
        out = []
        for p in range(first, first + n):
            for study in (1, 2):
                rel = f"{split}/patient{p:05d}/study{study}/view1_frontal.jpg"
                labels = {o: float(rng.random() < 0.3) for o in CHEXPERT_OBSERVATIONS}
                pixels = (rng.random((96, 80)) * 60 + 100).astype(np.uint8)
                if labels["Cardiomegaly"]:
                    pixels[30:70, 20:60] = 220
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / rel)
                out.append(
                    {
                        "Path": f"CheXpert-v1.0-small/{rel}",
                        "Sex": ("Male", "Female")[p % 2],
                        "Age": 20 + p % 60,
                        "Frontal/Lateral": "Frontal",
                        "AP/PA": "PA",
                        **labels,
                    }
                )
        return out

    write_csv(root / "train.csv", rows("train", 1, patients), cols)
    write_csv(root / "valid.csv", rows("valid", 64541, max(patients // 4, 2)), cols)
    return root


def chestxray14(root: Path) -> Path:
    cols = [
        "Image Index",
        "Finding Labels",
        "Follow-up #",
        "Patient ID",
        "Patient Age",
        "Patient Gender",
        "View Position",
        "OriginalImage[Width",
        "Height]",
        "OriginalImagePixelSpacing[x",
        "y]",
    ]
    rows = [
        ["00000001_000.png", "Cardiomegaly", 0, 1, 58, "M", "PA", 2682, 2749, 0.143, 0.143],
        [
            "00000001_001.png",
            "Cardiomegaly|Emphysema",
            1,
            1,
            58,
            "M",
            "PA",
            2894,
            2729,
            0.143,
            0.143,
        ],
        [
            "00000003_000.png",
            "Hernia|Pleural_Thickening",
            0,
            3,
            81,
            "F",
            "AP",
            2582,
            2991,
            0.143,
            0.143,
        ],
        ["00000005_000.png", "No Finding", 0, 5, 412, "F", "PA", 2048, 2500, 0.168, 0.168],
    ]
    write_csv(root / "Data_Entry_2017.csv", [dict(zip(cols, r, strict=True)) for r in rows])
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    (root / "test_list.txt").write_text("00000003_000.png\n00000005_000.png\n")
    return root


PADCHEST_CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"


def padchest(root: Path) -> Path:
    base = {
        "StudyDate_DICOM": 20140128,
        "Rows_DICOM": 2000,
        "Columns_DICOM": 1800,
        "Report": "derrame pleural izquierdo .",
        "MethodLabel": "Physician",
    }
    write_csv(
        root / PADCHEST_CSV,
        [
            {
                "ImageID": "a1.png",
                "ImageDir": 0,
                "StudyID": "st1",
                "PatientID": "pt1",
                "PatientBirth": 1940.0,
                "PatientSex_DICOM": "M",
                "ViewPosition_DICOM": "POSTEROANTERIOR",
                "Projection": "PA",
                "Labels": "['pleural effusion', ' cardiomegaly']",
                **base,
            },
            {
                "ImageID": "a2.png",
                "ImageDir": 0,
                "StudyID": "st1",
                "PatientID": "pt1",
                "PatientBirth": 1940.0,
                "PatientSex_DICOM": "M",
                "ViewPosition_DICOM": "LATERAL",
                "Projection": "L",
                "Labels": "['pleural effusion', ' cardiomegaly']",
                **base,
            },
            {
                "ImageID": "b1.png",
                "ImageDir": 12,
                "StudyID": "st2",
                "PatientID": "pt2",
                "PatientBirth": 1990.0,
                "PatientSex_DICOM": "F",
                "ViewPosition_DICOM": "AP",
                "Projection": "AP_horizontal",
                "Labels": "['normal']",
                **base,
            },
            {
                "ImageID": "c1.png",
                "ImageDir": 12,
                "StudyID": "st3",
                "PatientID": "pt3",
                "PatientBirth": None,
                "PatientSex_DICOM": None,
                "ViewPosition_DICOM": None,
                "Projection": "COSTAL",
                "Labels": None,
                **base,
            },
        ],
        PADCHEST_COLUMNS,
    )
    return root


def brax(root: Path) -> Path:
    write_csv(
        root / "master_spreadsheet_update.csv",
        [
            {
                "DicomPath": "images/id_a/Study_1/Series_1/image-1.dcm",
                "PngPath": "images/id_a/Study_1/Series_1/image-1.png",
                "PatientID": "id_a",
                "AccessionNumber": 1001,
                "ViewPosition": "PA",
                "PatientSex": "F",
                "PatientAge": "045Y",
                **chexpert_values(Pneumothorax=1.0, Pleural_Other=1.0),
            },
            {
                "DicomPath": "images/id_a/Study_1/Series_2/image-2.dcm",
                "PngPath": "images/id_a/Study_1/Series_2/image-2.png",
                "PatientID": "id_a",
                "AccessionNumber": 1001,
                "ViewPosition": "LL",
                "PatientSex": "F",
                "PatientAge": "045Y",
                **chexpert_values(Pneumothorax=1.0, Pleural_Other=1.0),
            },
            {
                "DicomPath": "images/id_b/Study_7/Series_1/image-1.dcm",
                "PngPath": "images/id_b/Study_7/Series_1/image-1.png",
                "PatientID": "id_b",
                "AccessionNumber": 2002,
                "ViewPosition": "AP",
                "PatientSex": "M",
                "PatientAge": "85 or more",
                **chexpert_values(Cardiomegaly=0.0, Pneumothorax=-1.0),
            },
        ],
    )
    return root


VINDR_LABELS = [
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung cavity",
    "Lung cyst",
    "Lung Opacity",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
    "Other disease",
    "No finding",
]


def _vindr_row(image_id: str, rad_id: str | None, *positive: str) -> dict:
    row = {"image_id": image_id}
    if rad_id is not None:
        row["rad_id"] = rad_id
    row.update({label: int(label in positive) for label in VINDR_LABELS})
    return row


def vindr_cxr(root: Path) -> Path:
    ann = root / "annotations"
    write_csv(
        ann / "image_labels_train.csv",
        [
            _vindr_row("img_a", "R1", "Cardiomegaly", "Aortic enlargement"),
            _vindr_row("img_a", "R2", "Cardiomegaly"),
            _vindr_row("img_a", "R3", "Cardiomegaly", "Nodule/Mass"),
            _vindr_row("img_b", "R8", "No finding"),
            _vindr_row("img_b", "R9", "No finding"),
            _vindr_row("img_b", "R10", "No finding"),
        ],
    )
    write_csv(
        ann / "image_labels_test.csv",
        [_vindr_row("img_t", None, "Pleural effusion", "Tuberculosis", "Lung Opacity")],
    )
    write_csv(
        ann / "annotations_train.csv",
        [
            {
                "image_id": "img_a",
                "rad_id": "R1",
                "class_name": "Cardiomegaly",
                "x_min": 10.0,
                "y_min": 20.0,
                "x_max": 110.0,
                "y_max": 90.0,
            },
            {
                "image_id": "img_b",
                "rad_id": "R8",
                "class_name": "No finding",
                "x_min": None,
                "y_min": None,
                "x_max": None,
                "y_max": None,
            },
        ],
    )
    return root


def rsna(root: Path) -> Path:
    write_csv(
        root / "stage_2_train_labels.csv",
        [
            {
                "patientId": "p-neg",
                "x": None,
                "y": None,
                "width": None,
                "height": None,
                "Target": 0,
            },
            {
                "patientId": "p-pos",
                "x": 264.0,
                "y": 152.0,
                "width": 213.0,
                "height": 379.0,
                "Target": 1,
            },
            {
                "patientId": "p-pos",
                "x": 562.0,
                "y": 152.0,
                "width": 256.0,
                "height": 453.0,
                "Target": 1,
            },
            {"patientId": "p-nn", "x": None, "y": None, "width": None, "height": None, "Target": 0},
        ],
    )
    write_csv(
        root / "stage_2_detailed_class_info.csv",
        [
            {"patientId": "p-neg", "class": "Normal"},
            {"patientId": "p-pos", "class": "Lung Opacity"},
            {"patientId": "p-pos", "class": "Lung Opacity"},
            {"patientId": "p-nn", "class": "No Lung Opacity / Not Normal"},
        ],
    )
    return root


# CANDID-PTX: 6x5 (height x width) hand-made masks
CANDID_SHAPE = (6, 5)


def candid_masks() -> dict[str, np.ndarray]:
    ptx_a = np.zeros(CANDID_SHAPE, dtype=bool)
    ptx_a[0:2, 0:2] = True
    ptx_b = np.zeros(CANDID_SHAPE, dtype=bool)
    ptx_b[4:6, 3] = True
    tube = np.zeros(CANDID_SHAPE, dtype=bool)
    tube[1:5, 2] = True
    return {"ptx_a": ptx_a, "ptx_b": ptx_b, "tube": tube}


CANDID_REPORT = "EXAMINATION: Chest\n\nFINDINGS: Large right pneumothorax.\n\nIMPRESSION: PTX."


def candid(root: Path) -> Path:
    m = candid_masks()
    write_csv(
        root / "Pneumothorax_reports.csv",
        [
            {
                "SOPInstanceUID": "1.2.3.1.dcm",
                "filename": "P101_x.dcm",
                "EncodedPixels": rle_encode(m["ptx_a"], "siim"),
                "Report": CANDID_REPORT,
            },
            {
                "SOPInstanceUID": "1.2.3.1.dcm",
                "filename": "P101_x.dcm",
                "EncodedPixels": rle_encode(m["ptx_b"], "siim"),
                "Report": CANDID_REPORT,
            },
            {
                "SOPInstanceUID": "1.2.3.2.dcm",
                "filename": "P102_y.dcm",
                "EncodedPixels": "-1",
                "Report": "No acute abnormality.",
            },
            {
                "SOPInstanceUID": "1.2.3.3.dcm",
                "filename": "P101_z.dcm",
                "EncodedPixels": "-1",
                "Report": "FINDINGS: Chest tube in situ. IMPRESSION: ok",
            },
        ],
    )
    write_csv(
        root / "chest_tube.csv",
        [
            {
                "anon_SOPUID": "1.2.3.3.dcm",
                "anon_AnnotationID": "a1",
                "mask_rle": rle_encode(m["tube"], "siim"),
            }
        ],
    )
    write_csv(
        root / "acute_rib_fracture.csv",
        [{"anon_SOPUID": "1.2.3.2.dcm", "anon_AnnotationID": "a2", "mask_rle": "3 2"}],
    )
    return root


def rib_polygon(x0: float, y0: float, x1: float, y1: float) -> list[dict[str, float]]:
    return [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}]


def vindr_ribcxr(root: Path) -> Path:
    for split, names in (
        ("train", ["VinDr_RibCXR_train_000.png", "VinDr_RibCXR_train_001.png"]),
        ("val", ["VinDr_RibCXR_val_000.png"]),
    ):
        data: dict[str, dict] = {
            "img": {str(i): f"data/{split}/img/{n}" for i, n in enumerate(names)}
        }
        for side in ("R", "L"):
            for k in range(1, 11):
                data[f"{side}{k}"] = {str(i): "None" for i in range(len(names))}
        data["R1"]["0"] = rib_polygon(1, 1, 4, 3)
        data["L1"]["0"] = rib_polygon(6, 1, 9, 3)
        if len(names) > 1:
            data["R2"]["1"] = rib_polygon(0, 0, 2, 2)
        path = root / "data" / split / f"Vindr_RibCXR_{split}_mask.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


LUNG_SHAPE = (8, 12)


def lung_masks() -> tuple[np.ndarray, np.ndarray]:
    right = np.zeros(LUNG_SHAPE, dtype=bool)  # patient's right: image left
    right[1:7, 1:5] = True
    left = np.zeros(LUNG_SHAPE, dtype=bool)
    left[1:7, 7:11] = True
    return left, right


def mimic_lung(root: Path) -> Path:
    mimic(root)
    left, right = lung_masks()
    h, w = LUNG_SHAPE
    write_csv(
        root / "MIMIC-CXR-JPG.csv",
        [
            {
                "dicom_id": "d1",
                "Dice RCA (Max)": 0.93,
                "Dice RCA (Mean)": 0.9,
                "Landmarks": "1,2",
                "Left Lung": rle_encode(left, "standard"),
                "Right Lung": rle_encode(right, "standard"),
                "Heart": "",
                "Height": h,
                "Width": w,
            },
            {
                "dicom_id": "d3",
                "Dice RCA (Max)": 0.7,
                "Dice RCA (Mean)": 0.6,
                "Landmarks": "1,2",
                "Left Lung": rle_encode(left, "standard"),
                "Right Lung": rle_encode(right, "standard"),
                "Heart": "",
                "Height": h,
                "Width": w,
            },
        ],
    )
    graph = {
        "image_id": "d1",
        "objects": [
            {
                "bbox_name": "right upper lung zone",
                "original_x1": 0,
                "original_y1": 0,
                "original_x2": 6,
                "original_y2": 3,
            },
            {
                "bbox_name": "left lower lung zone",
                "original_x1": 6,
                "original_y1": 5,
                "original_x2": 12,
                "original_y2": 8,
            },
            {
                "bbox_name": "cardiac silhouette",
                "original_x1": 3,
                "original_y1": 3,
                "original_x2": 9,
                "original_y2": 7,
            },
        ],
    }
    sg = root / "scene_graph" / "d1_SceneGraph.json"
    sg.parent.mkdir(parents=True, exist_ok=True)
    sg.write_text(json.dumps(graph))
    return root


# PadChest's published CSV header (the release's README: one column a DICOM field or label
# field, in this order).
PADCHEST_COLUMNS = [
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "Modality_DICOM",
    "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM",
    "PixelRepresentation_DICOM",
    "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM",
    "BitsStored_DICOM",
    "WindowCenter_DICOM",
    "WindowWidth_DICOM",
    "Rows_DICOM",
    "Columns_DICOM",
    "XRayTubeCurrent_DICOM",
    "Exposure_DICOM",
    "ExposureInuAs_DICOM",
    "ExposureTime_DICOM",
    "RelativeXRayExposure_DICOM",
    "ReportID",
    "Report",
    "MethodLabel",
    "Labels",
    "Localizations",
    "LabelsLocalizationsBySentence",
    "LabelCUIS",
    "LocalizationsCUIS",
]

# Rows whose `Labels` name a specific term and not its parent, as PadChest does. Expected,
# finding by finding: what the published hierarchy recovers (a flat term list gives 0).
PADCHEST_SPECIFIC = [
    # (ImageID, PatientID, Labels, findings the hierarchy makes positive)
    ("s1.png", "ptA", "['callus rib fracture', ' pleural effusion']", {"rib_fracture"}),
    ("s2.png", "ptB", "['calcified pleural thickening']", {"pleural_thickening"}),
    (
        "s3.png",
        "ptC",
        "['supra aortic elongation', ' superior mediastinal enlargement']",
        {"aortic_enlargement"},
    ),
    ("s4.png", "ptD", "['loculated pleural effusion']", {"pleural_effusion"}),
    ("s5.png", "ptE", "['loculated fissural effusion']", {"pleural_effusion"}),
    (
        "s6.png",
        "ptF",
        "['hydropneumothorax', ' chest drain tube']",
        {"pneumothorax", "pleural_effusion"},
    ),
    ("s7.png", "ptG", "['COPD signs', ' NSG tube', ' callus rib fracture']", {"rib_fracture"}),
    ("s8.png", "ptH", "['normal']", set()),
]


def padchest_specific(root: Path) -> Path:
    """PadChest rows in the full published layout whose labels need the hierarchy."""
    rows = []
    for i, (image, patient, labels, _) in enumerate(PADCHEST_SPECIFIC):
        row = dict.fromkeys(PADCHEST_COLUMNS)
        row.update(
            ImageID=image,
            ImageDir=i % 2,
            StudyDate_DICOM=20150312,
            StudyID=f"study_{patient}",
            PatientID=patient,
            PatientBirth=1950.0,
            PatientSex_DICOM="F",
            ViewPosition_DICOM="POSTEROANTERIOR",
            Projection="PA",
            Modality_DICOM="CR",
            PhotometricInterpretation_DICOM="MONOCHROME2",
            BitsStored_DICOM=12,
            Rows_DICOM=40,
            Columns_DICOM=32,
            ReportID=1000 + i,
            Report="callo de fractur costal .",
            MethodLabel="Physician",
            Labels=labels,
            Localizations="[]",
            LabelsLocalizationsBySentence="[]",
            LabelCUIS="[]",
            LocalizationsCUIS="[]",
        )
        rows.append(row)
    write_csv(root / PADCHEST_CSV, rows, PADCHEST_COLUMNS)
    return root


# VinDr-CXR as Kaggle's VinBigData competition ships it: `train.csv`, one row a box (or a
# "No finding" row without box) of one radiologist; no image-level label files.
VINDR_KAGGLE_COLUMNS = [
    "image_id",
    "class_name",
    "class_id",
    "rad_id",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
]
VINDR_KAGGLE_CLASS_ID = {
    "Aortic enlargement": 0,
    "Cardiomegaly": 3,
    "Pleural effusion": 10,
    "No finding": 14,
}
KAGGLE_A = "9a5094b2563a1ef3ff50dc5c7ff71345"
KAGGLE_B = "051132a778e61a86eb147c7c6f564dfe"


def _kaggle_box(image: str, cls: str, rad: str, box: tuple[float, ...] | None) -> dict:
    x0, y0, x1, y1 = box if box else (None, None, None, None)
    return {
        "image_id": image,
        "class_name": cls,
        "class_id": VINDR_KAGGLE_CLASS_ID[cls],
        "rad_id": rad,
        "x_min": x0,
        "y_min": y0,
        "x_max": x1,
        "y_max": y1,
    }


def vindr_kaggle(root: Path) -> Path:
    write_csv(
        root / "train.csv",
        [
            _kaggle_box(KAGGLE_A, "Cardiomegaly", "R9", (691.0, 1375.0, 1653.0, 1831.0)),
            _kaggle_box(KAGGLE_A, "Cardiomegaly", "R10", (698.0, 1384.0, 1645.0, 1822.0)),
            _kaggle_box(KAGGLE_A, "Aortic enlargement", "R9", (1264.0, 743.0, 1611.0, 1019.0)),
            _kaggle_box(KAGGLE_A, "No finding", "R8", None),
            _kaggle_box(KAGGLE_B, "No finding", "R1", None),
            _kaggle_box(KAGGLE_B, "No finding", "R2", None),
            _kaggle_box(KAGGLE_B, "No finding", "R3", None),
        ],
        VINDR_KAGGLE_COLUMNS,
    )
    return root


def write_dicom(path: Path, pixels: np.ndarray, *, sex: str = "", age: str = "") -> Path:
    """A minimal chest DX DICOM file (MONOCHROME2, 12 bits stored, windowed)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientSex = sex
    ds.PatientAge = age
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_images(root: Path, image_paths: list[str], seed: int = 0) -> None:
    """A small noisy image at each path: DICOM, 16-bit PNG (PadChest, BRAX) or 8-bit JPEG/PNG."""
    rng = np.random.default_rng(seed)
    for rel in image_paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".dcm", ".dicom"):
            write_dicom(path, rng.integers(0, 4096, (40, 32)), sex="F", age="045Y")
        elif path.suffix == ".png":
            from PIL import Image

            Image.fromarray(rng.integers(100, 4000, (40, 32)).astype(np.uint16)).save(path)
        else:
            from PIL import Image

            Image.fromarray(rng.integers(0, 255, (40, 32)).astype(np.uint8)).save(path)
