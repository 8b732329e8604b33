"""The OpenAPI document covers every route with its roles, and docs/openapi.json is current."""

from __future__ import annotations

import json
from pathlib import Path

from streams.runtime.openapi import ROUTES, document
from streams.runtime.web import ROUTE_ROLES

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_every_route_is_documented_with_its_roles():
    assert set(ROUTE_ROLES) <= set(ROUTES)
    paths = document(ROUTE_ROLES)["paths"]
    assert set(paths) == set(ROUTE_ROLES)
    for path, roles in ROUTE_ROLES.items():
        (operation,) = paths[path].values()
        if roles == "public":
            assert "security" not in operation, path
        else:
            assert operation["x-roles"] == list(roles) and {"401", "403"} <= set(operation["responses"]), path


def test_the_publish_format_bodies_come_from_the_avro_schemas():
    schemas = document(ROUTE_ROLES)["components"]["schemas"]
    request = schemas["RemedyRequested"]
    assert request["additionalProperties"] is False
    assert {"request_id", "customer_id", "amount_cents", "currency", "requested_at"} <= set(request["required"])
    assert request["properties"]["requested_at"]["format"] == "date-time"
    assert "CREDIT" in request["properties"]["kind"]["enum"]


def test_docs_openapi_json_is_the_current_document():
    assert json.loads(COMMITTED.read_text()) == document(ROUTE_ROLES), \
        "docs/openapi.json is stale: run `remedy-ledger openapi > docs/openapi.json`"
