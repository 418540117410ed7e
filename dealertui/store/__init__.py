"""The job store: the only package with SQL in it."""

from dealertui.store.db import Database, mask_password
from dealertui.store.jobstore import JobStore, JobTypeRule

__all__ = ["Database", "JobStore", "JobTypeRule", "mask_password"]
