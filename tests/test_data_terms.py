from cxrflow.data_terms import DATA_TERMS, SITE_DATA, binding_terms, terms_of
from cxrflow.datasets.registry import ADAPTERS
from cxrflow.provenance import DICOM_SOURCE, PHANTOM_SOURCE


def test_every_importable_dataset_has_its_terms():
    assert set(ADAPTERS) <= set(DATA_TERMS)
    for name in ADAPTERS:
        assert DATA_TERMS[name].link.startswith("https://"), name


def test_which_terms_bind_the_weights():
    sources = ["chexpert", "chestxray14", PHANTOM_SOURCE, DICOM_SOURCE, "hospital-a"]
    assert set(binding_terms(sources)) == {"chexpert", DICOM_SOURCE, "hospital-a"}
    assert terms_of(DICOM_SOURCE) is SITE_DATA and terms_of("hospital-a") is SITE_DATA
