"""The finding labeler's vocabulary and its evaluation (the labeler: `cxrflow.report.labeler`)."""
