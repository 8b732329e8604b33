"""The worker's HTTP API as an OpenAPI 3.1 document, built from the routes' roles (web.ROUTE_ROLES)
and the Avro schemas of the publish format, so it cannot drift from what the worker serves.

`remedy-ledger openapi` prints it; the worker serves it at /openapi.json; docs/openapi.json is the
committed copy (a test checks it is current).
"""

from __future__ import annotations

from streams.runtime.upstream import avro_json_by_name

def _query(name: str, description: str, required: bool = False, **schema) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", **schema}}


SINCE = _query("since", "first UTC day included (YYYY-MM-DD)", format="date")
UNTIL = _query("until", "last UTC day included (YYYY-MM-DD)", format="date")
JSON_ANSWER = {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}
ERROR = {"description": "what is wrong, in `error`",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
DECISION = {"description": "the decision, explained",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}}
TOTALS = {"description": "totals; every amount is cents per currency, never a sum across currencies",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FinanceTotals"}}}}
PENDING = {"description": "not decided within the wait; poll `poll` (also in the Location header)",
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pending"}}}}

# Per path: method, summary, parameters, request body record (publish format) and answers.
ROUTES = {
    "/health": ("get", "Liveness; the worker's status (roles, agents, partitions) for ops or on loopback", [], None,
                {"200": JSON_ANSWER}),
    "/ready": ("get", "Readiness: 200 when Kafka and ClickHouse answer, partitions are assigned, state is restored "
                      "and the lag is under REMEDY_READY_LAG_MAX; 503 with the reasons", [], None,
               {"200": JSON_ANSWER, "503": JSON_ANSWER}),
    "/metrics": ("get", "Prometheus text format (remedy_* metrics)", [], None,
                 {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    "/openapi.json": ("get", "This document", [], None, {"200": JSON_ANSWER}),
    "/finance/totals": ("get", "Granted totals by kind and outcome, and by day, kind or reason; every amount per "
                               "currency",
                        [SINCE, UNTIL, _query("by", "breakdown", enum=["day", "kind", "reason"]),
                         _query("dates", "date decisions by: posting date (default) or event date",
                                enum=["posting", "event"])], None,
                        {"200": TOTALS, "400": ERROR}),
    "/finance/close-period": ("post", "Close an accounting month at the projector's position: later decisions dated "
                                      "in it post to the first open month with LATE_POSTING; answers the PeriodClosed",
                              [_query("period", "the month, YYYY-MM", required=True),
                               _query("by", "who closes it", required=True)], None,
                              {"200": JSON_ANSWER, "400": ERROR}),
    "/finance/decision-count": ("get", "How many decisions the ledger holds", [], None, {"200": JSON_ANSWER}),
    "/finance/customer": ("get", "One customer's decisions, outstanding credit and account totals (per currency)",
                          [_query("id", "customer_id", required=True)], None, {"200": JSON_ANSWER, "400": ERROR}),
    "/finance/associates": ("get", "Current grants per associate, as requester and as decider, by kind (cents per "
                                   "currency), decided between since and until; never \"customer\" or \"system\"",
                            [SINCE, UNTIL], None,
                            {"200": JSON_ANSWER, "400": ERROR}),
    "/finance/daily": ("get", "Granted count and cents per currency, per day and kind", [SINCE, UNTIL], None,
                       {"200": JSON_ANSWER, "400": ERROR}),
    "/finance/export": ("get", "Every decision (with is_current) as CSV (header row, NULL as an empty field, "
                               "reason codes joined by ';') or Parquet; each amount next to its currency",
                        [SINCE, UNTIL, _query("format", "file format", enum=["csv", "parquet"])], None,
                        {"200": {"description": "the export", "content": {"text/csv": {},
                                                                          "application/vnd.apache.parquet": {}}},
                         "400": ERROR}),
    "/projections/audit": ("get", "How far the projector got and every audit figure (for `remedy-ledger verify`)",
                           [], None, {"200": JSON_ANSWER}),
    "/projections/rebuild": ("post", "Rebuild the projections from the decision log into new tables, then swap "
                                     "(GET the same path follows the progress)", [], None,
                             {"202": JSON_ANSWER, "409": ERROR}),
    "/v1/reviews": ("post", "Approve or deny an escalated request as the person the token names, with a note; "
                            "never one's own request (403 SELF_APPROVAL)",
                    [], "Review", {"202": JSON_ANSWER, "400": ERROR, "403": ERROR, "404": ERROR, "409": ERROR}),
    "/v1/review-cases": ("get", "The review queue: escalated requests waiting for a person, filtered and sorted",
                         [_query("kind", "remedy kind"), _query("reason", "a reason code the decision carries"),
                          _query("customer", "customer_id"), _query("household", "household_id"),
                          _query("associate", "the associate who asked (requested_by)"),
                          _query("assigned_to", "the person the case is assigned to"),
                          _query("older_than_hours", "waiting at least this many hours", pattern="^[0-9]+$"),
                          _query("newer_than_hours", "waiting fewer than this many hours", pattern="^[0-9]+$"),
                          _query("sort", "order (age: oldest first; amount: largest first)",
                                 enum=["age", "amount", "customer", "kind"])], None,
                         {"200": JSON_ANSWER, "400": ERROR}),
    "/v1/review-cases/{request_id}": ("get", "One case: the decision, its reasons and inputs (counters, caps, tier, "
                                             "policy version) in words, what the customer holds now (now_in_words), "
                                             "and the customer's, household's and "
                                             "associate's recent decisions",
                                      [{"name": "request_id", "in": "path", "required": True,
                                        "schema": {"type": "string"}}], None, {"200": JSON_ANSWER, "404": ERROR}),
    "/v1/review-assignments": ("post", "Assign a case to a person (the assigner is the token's identity); 202 once "
                                       "the assignment is on Kafka", [], "Assignment",
                               {"202": JSON_ANSWER, "400": ERROR}),
    "/v1/policy": ("get", "The policy in force (document, version, who applied it and why) and every version on "
                          "the policy topic with the thresholds it changed against the version before it", [], None,
                   {"200": JSON_ANSWER}),
    "/v1/rankings": ("get", "Households and associates ranked by claims (requests made in the period), then granted "
                            "cents (per currency)", [SINCE, _query("until", "first UTC day after the period "
                                                                            "(YYYY-MM-DD)", format="date")], None,
                     {"200": JSON_ANSWER, "400": ERROR}),
    "/v1/backtests": ("post", "Backtest a policy document on the recorded log (as `remedy-ledger policy backtest`): "
                              "reproduced_share, decisions, changed, transitions, granted cents before and after per "
                              "currency, per kind, per reason code, per day, most affected; one at a time (409)",
                      [], "Backtest", {"200": JSON_ANSWER, "400": ERROR, "409": ERROR}),
    "/v1/shadow": ("get", "The shadow policy (`remedy-ledger policy shadow`) against the live decisions of the same "
                          "requests: transitions, granted cents live and in shadow per currency, per kind, per reason "
                          "code; 404 before any shadow was started", [], None, {"200": JSON_ANSWER, "404": ERROR}),
    "/fraud": ("get", "The fraud team's page (HTML and script; its figures come from the routes above with the "
                      "token the person enters)", [], None,
               {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}),
    "/v1/remedy-requests": ("post", "Decide a remedy request now: 200 with the decision within REMEDY_SYNC_WAIT_MS, "
                                    "else 202 to poll; a repeat gets the same decision, a conflicting repeat 409",
                            [], "RemedyRequested", {"200": DECISION, "202": PENDING, "400": ERROR, "409": ERROR}),
    "/v1/remedy-requests/{request_id}": ("get", "The decision of a request sent through this worker: 200, or 202 "
                                                "while it waits; 404 when this worker knows nothing of it",
                                         [{"name": "request_id", "in": "path", "required": True,
                                           "schema": {"type": "string"}}], None,
                                         {"200": DECISION, "202": PENDING, "404": ERROR}),
    "/v1/incidents": ("post", "Report an incident (publish format); 202 once it is on the incidents topic", [],
                      "IncidentReported", {"202": JSON_ANSWER, "400": ERROR}),
    "/privacy/erase": ("post", "Erase a customer's personal data from projections and state (docs/privacy.md); "
                               "the id travels in the body, never in the URL",
                       [], "Erasure", {"200": JSON_ANSWER, "400": ERROR, "409": ERROR, "503": ERROR}),
    "/privacy/erased": ("get", "How many customers were erased (their pseudonyms, never their ids)", [], None,
                        {"200": JSON_ANSWER}),
}


def _avro_to_json_schema(avro_type, named: dict) -> dict:
    """The JSON schema of an Avro type as the publish format writes it (timestamps as ISO-8601 text)."""
    if isinstance(avro_type, list):
        options = [option for option in avro_type if option != "null"]
        schema = _avro_to_json_schema(options[0], named) if len(options) == 1 else {
            "oneOf": [_avro_to_json_schema(option, named) for option in options]}
        return {"anyOf": [schema, {"type": "null"}]} if "null" in avro_type else schema
    if isinstance(avro_type, str):
        if avro_type in named:
            return _avro_to_json_schema(named[avro_type], named)
        return {"string": {"type": "string"}, "long": {"type": "integer"}, "int": {"type": "integer"},
                "boolean": {"type": "boolean"}, "double": {"type": "number"}}.get(avro_type, {})
    if avro_type.get("logicalType") == "timestamp-millis":
        return {"type": "string", "format": "date-time", "description": "ISO-8601 with a zone"}
    kind = avro_type["type"]
    if kind == "enum":
        return {"type": "string", "enum": list(avro_type["symbols"])}
    if kind == "array":
        return {"type": "array", "items": _avro_to_json_schema(avro_type["items"], named)}
    if kind == "record":
        return {"type": "object", "additionalProperties": False,
                "required": [f["name"] for f in avro_type["fields"] if "default" not in f],
                "properties": {f["name"]: {**_avro_to_json_schema(f["type"], named),
                                           **({"description": f["doc"]} if f.get("doc") else {})}
                               for f in avro_type["fields"]}}
    return _avro_to_json_schema(kind, named)


def document(route_roles: dict) -> dict:
    """The OpenAPI document of every route in `route_roles` (path -> roles or "public")."""
    named = avro_json_by_name()
    schemas = {name: _avro_to_json_schema(named[name], named) for name in ("RemedyRequested", "IncidentReported")}
    schemas.update({
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "Review": {"type": "object", "required": ["request_id", "verdict", "note"], "properties": {
            "request_id": {"type": "string"}, "verdict": {"type": "string", "enum": ["APPROVE", "DENY"]},
            "note": {"type": "string", "description": "why, in a sentence (required)"},
            "by": {"type": "string", "description": "only for a worker without tokens (loopback)"}}},
        "Assignment": {"type": "object", "required": ["request_id", "assigned_to"], "properties": {
            "request_id": {"type": "string"}, "assigned_to": {"type": "string"},
            "by": {"type": "string", "description": "only for a worker without tokens (loopback)"}}},
        "Backtest": {"type": "object", "properties": {
            "policy": {"type": "object", "description": "a full or partial policy document ({} = the defaults)"},
            "since": {"type": ["string", "null"], "description": "first day of the period (YYYY-MM-DD, UTC)"},
            "until": {"type": ["string", "null"], "description": "first day after the period (YYYY-MM-DD, UTC)"}}},
        "Erasure": {"type": "object", "required": ["customer_id", "reason"], "properties": {
            "customer_id": {"type": "string"}, "reason": {"type": "string"}}},
        "Decision": {"type": "object", "properties": {
            "request_id": {"type": "string"}, "decision_id": {"type": "string"},
            "outcome": {"type": "string", "enum": ["GRANTED", "DENIED", "ESCALATED"]},
            "granted_cents": {"type": "integer"}, "currency": {"type": "string"},
            "granted": {"type": "string", "example": "15.00 USD"},
            "reasons": {"type": "array", "items": {"type": "object", "properties": {
                "code": {"type": "string"}, "meaning": {"type": "string"}}}},
            "next": {"type": "string"}, "decided_by": {"type": "string"}, "policy_version": {"type": "string"}}},
        "CentsByCurrency": {"type": "object", "additionalProperties": {"type": "integer"},
                            "description": "integer minor units per ISO 4217 currency; {} when nothing was summed",
                            "example": {"EUR": 1500, "USD": 4500}},
        "GrantedFigure": {"type": "object", "required": ["count", "cents"], "properties": {
            "count": {"type": "integer", "description": "granted decisions, whatever their currency"},
            "cents": {"$ref": "#/components/schemas/CentsByCurrency"}}},
        "FinanceTotals": {"type": "object", "properties": {
            "since": {"type": ["string", "null"], "format": "date"}, "until": {"type": ["string", "null"], "format": "date"},
            "by_kind": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/GrantedFigure"}},
            "by_outcome": {"type": "object", "additionalProperties": {"type": "integer"}},
            "granted": {"$ref": "#/components/schemas/GrantedFigure"},
            "decisions": {"type": "integer"},
            "by": {"type": "string", "enum": ["day", "kind", "reason"]},
            "rows": {"type": "array", "items": {"type": "object", "properties": {
                "day": {"type": "string"}, "kind": {"type": "string"}, "reason": {"type": "string"},
                "decisions": {"type": "integer"}, "granted_count": {"type": "integer"},
                "granted_cents": {"$ref": "#/components/schemas/CentsByCurrency"}}}}}},
        "Pending": {"type": "object", "properties": {
            "request_id": {"type": "string"}, "status": {"type": "string", "enum": ["PENDING"]},
            "poll": {"type": "string"}, "next": {"type": "string"}}},
    })
    paths = {}
    for path, roles in route_roles.items():
        method, summary, parameters, body, answers = ROUTES[path]
        operation = {"summary": summary, "parameters": parameters, "responses": dict(answers)}
        if roles != "public":
            operation["security"] = [{"bearer": []}]
            operation["x-roles"] = list(roles)
            operation["responses"].update({"401": ERROR, "403": ERROR})
        if body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body}"}}}}
        paths[path] = {method: operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Remedy Ledger worker", "version": "1",
                 "description": "Bearer tokens per role (REMEDY_HTTP_TOKENS_FILE); x-roles lists who may call."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
