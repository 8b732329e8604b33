"""Revision numbers may have gaps (branches reserve numbers and merge in any order), but start at r1."""

from __future__ import annotations

import shutil

import pytest

import schemas
from schemas._codec import SCHEMA_ROOT_DEFAULT, SchemaSet
from streams.errors import DecodeError


def test_a_gap_in_revision_numbers_is_accepted_and_the_newest_revision_reads_and_writes():
    assert 8 in SchemaSet.load(SCHEMA_ROOT_DEFAULT).revisions  # r8 exists while r6 and r7 may not yet
    datum = {"request_id": "r1", "assigned_to": "fraud-ana", "assigned_by": "lead-bo", "assigned_at": 1_785_888_000_000}
    name, decoded = schemas.decode(schemas.encode("ReviewAssigned", datum))
    assert name == "ReviewAssigned" and decoded["assigned_to"] == "fraud-ana"


def test_revisions_must_start_at_r1(tmp_path):
    root = tmp_path / "avro"
    shutil.copytree(SCHEMA_ROOT_DEFAULT / "r2", root / "r2")
    with pytest.raises(DecodeError, match="revisions must start at r1"):
        SchemaSet.load(root)
