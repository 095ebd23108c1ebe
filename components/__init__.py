"""KFP components: one thin adapter per stage, from KFP inputs/outputs to one library call.

Each component is a lightweight Python component whose body imports the installed `cxrflow`
package: under `kfp.local.SubprocessRunner(use_venv=False)` it runs in the current
environment, and on a cluster it runs unchanged in the project's image (no pip install).
"""
