"""Pure: the report (`zapstream.analytics.report`) as readable text for a terminal."""

from __future__ import annotations

from typing import Any

from zapstream.db_query import format_table


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _pairs(title: str, pairs: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join([title, *(f"  {k.ljust(width)}  {v}" for k, v in pairs)])


def format_report(r: dict[str, Any]) -> str:
    p = r["period"]
    inbound, reply, decision = r["inbound"], r["reply_latency"], r["decision_latency"]
    conv, intents, ho = r["conversations"], r["intents"], r["handoffs"]
    d, re_, dl = r["delivery"], r["reengagements"], r["dead_letters"]
    tpc = conv["turns_per_conversation"]
    parts = [f"zapstream report {p['from']} → {p['to']} (UTC, end excluded)"]
    if r["missing_tables"]:
        parts.append(f"(not in this file yet, counted as empty: {', '.join(r['missing_tables'])})")
    parts.append(
        _pairs(
            "Overview",
            [
                ("inbound messages", inbound["messages"]),
                ("active users", inbound["active_users"]),
                ("turns", intents["turns"]),
                ("conversations", f"{conv['count']} (a gap over {_n(conv['gap_s'])} s starts one)"),
                ("turns per conversation", f"mean {_n(tpc['mean'])}, p50 {_n(tpc['p50'])}, max {_n(tpc['max'])}"),
                ("first reply p50 / p95", f"{_n(reply['p50_s'])} s / {_n(reply['p95_s'])} s ({reply['answered']} of {reply['turns']} turns answered)"),
                ("decision p50 / p95", f"{_n(decision['p50_s'])} s / {_n(decision['p95_s'])} s"),
                ("fallbacks", f"{intents['fallbacks']} ({_pct(intents['fallback_rate'])} of turns)"),
                ("handoffs", f"{ho['opened']} opened ({_pct(ho['rate'])} of conversations), {ho['requested_by_engine']} asked by the engine"),
                ("time to a human p50 / p95", f"{_n(ho['time_to_human_s']['p50'])} s / {_n(ho['time_to_human_s']['p95'])} s ({ho['answered_by_human']} answered)"),
                ("replies accepted", d["accepted"]),
                ("delivered / read", f"{d['delivered']} ({_pct(d['delivery_rate'])}) / {d['read']} ({_pct(d['read_rate'])} of delivered)"),
                ("failed / dead-lettered / pending", f"{d['failed']} / {d['dead_lettered']} / {d['pending']}"),
                ("delivery delay p50 / p95", f"{_n(d['delivery_delay_s']['p50'])} s / {_n(d['delivery_delay_s']['p95'])} s"),
                ("read delay p50 / p95", f"{_n(d['read_delay_s']['p50'])} s / {_n(d['read_delay_s']['p95'])} s"),
                ("re-engagements sent / returned", f"{re_['sent']} / {re_['returned']} ({_pct(re_['return_rate'])})"),
                ("time to return p50", f"{_n(re_['time_to_return_s']['p50'])} s"),
                ("dead letters (outbound / processing / sink)", f"{dl['outbound']} / {sum(x['count'] for x in dl['processing'])} / {dl['sink']}"),
            ],
        )
    )
    parts.append("Per day\n" + _series(inbound["per_day"]))
    if inbound["per_hour"] is not None:
        busy = [h for h in inbound["per_hour"] if h["messages"]]
        parts.append("Per hour (hours with messages)\n" + _series(busy))
    if intents["by_intent"]:
        parts.append(
            "Intents\n"
            + format_table(["intent", "turns"], [(i["intent"], i["turns"]) for i in intents["by_intent"]])
        )
    if dl["by_error_code"]:
        parts.append(
            "Dead letters by error code\n"
            + format_table(
                ["error_code", "count", "reason"],
                [(x["error_code"], x["count"], x["reason"]) for x in dl["by_error_code"]],
            )
        )
    if dl["processing"]:
        parts.append(
            "Processing dead letters\n"
            + format_table(
                ["stage", "error_type", "count"],
                [(x["stage"], x["error_type"], x["count"]) for x in dl["processing"]],
            )
        )
    return "\n\n".join(parts)


def _series(rows: list[dict[str, Any]]) -> str:
    return format_table(
        ["at", "messages", "active_users"],
        [(x["at"], x["messages"], x["active_users"]) for x in rows],
    )
