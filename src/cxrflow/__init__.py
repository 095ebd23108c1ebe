"""cxrflow: train and ship RAD-DINO-style chest X-ray foundation encoders on Kubeflow."""

__version__ = "0.1.0"
