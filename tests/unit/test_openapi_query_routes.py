"""`make openapi` documents the query routes with their parameters, answers and the API key."""

from gasmon_local.openapi import build_spec


def test_the_query_routes_are_in_the_spec_with_their_models() -> None:
    spec = build_spec()
    for path, model in {
        "/series": "SeriesResponse",
        "/devices": "DevicePage",
        "/warnings": "WarningPage",
        "/alerts": "AlertPage",
        "/alarms": "AlarmHistoryPage",
        "/config": "DashboardConfig",
    }.items():
        operation = spec["paths"][path]["get"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model)
        assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    series = {p["name"]: p for p in spec["paths"]["/series"]["get"]["parameters"]}
    assert series["gas"]["required"] is True
    assert series["device"]["schema"]["anyOf"][0]["pattern"] and "GET /devices" in series["device"]["description"]
    assert series["interval"]["schema"]["pattern"] == "^(auto|[1-9][0-9]{0,4}[smhd])$"
    limit = {p["name"]: p for p in spec["paths"]["/warnings"]["get"]["parameters"]}["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 500)
    alarms = {p["name"]: p["schema"] for p in spec["paths"]["/alarms"]["get"]["parameters"]}
    assert alarms["state"]["enum"] == ["open", "closed", "all"] and alarms["state"]["default"] == "all"
    assert (alarms["limit"]["minimum"], alarms["limit"]["maximum"]) == (1, 200)
    assert spec["security"] == [{"api_key": []}]
