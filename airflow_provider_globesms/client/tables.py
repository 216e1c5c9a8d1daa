"""Every table the provider writes to a task's log, in one place: what a data engineer reads after a run.

Plain text (``tabulate``'s simple format), so it reads the same in Airflow's log view, a terminal and a
CI artefact. Each table takes the figures it shows and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

from airflow_provider_globesms.client.bulk.prepare import ValidationReport
from airflow_provider_globesms.client.campaign.budget import Budget
from airflow_provider_globesms.client.results.report import SendSummary


def invalid_rows_table(report: ValidationReport) -> str:
    """The kept row errors (row, masked number, field, reason), with how many more there are by field."""
    rows = [[e.row, e.to or "-", e.field, e.reason] for e in report.errors]
    text = str(tabulate(rows, headers=["row", "to", "field", "reason"], tablefmt="simple"))
    hidden = report.invalid - len(report.errors)
    if hidden > 0:
        by_field = ", ".join(f"{name}: {count}" for name, count in report.invalid_by_field.most_common())
        text += f"\n... and {hidden} more invalid rows (by field: {by_field})"
    return text


def cost_table(budget: Budget) -> str:
    """Country, recipients, segments and estimated cost, largest first, with the totals."""
    rows: list[list[object]] = []
    for region, segments in budget.segments.most_common():
        price = budget.price(region)
        cost = "-" if price is None else f"{price * segments:.4f}"
        rows.append([region, budget.recipients[region], segments, cost])
    total, unpriced = budget.cost()
    rows.append(["total", sum(budget.recipients.values()), sum(budget.segments.values()), f"{total:.4f}"])
    headers = ["country", "recipients", "segments", "estimated cost"]
    text = str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    if unpriced and budget.prices:
        text += f"\n(no price for {', '.join(unpriced)}: not in the estimated total)"
    return text


def send_table(s: SendSummary) -> str:
    """Every recipient's final status, whichever try settled it, then what this try did (zero rows left out)."""
    rows: list[list[Any]] = [
        ["accepted", s.accepted],
        ["arrived, outcome unknown (no MessageId)", s.arrived],
        ["unknown outcome", s.unknown],
        ["failed", s.failed],
        ["invalid, skipped", s.invalid],
    ]
    rows += [[f"  failed: {code}", count] for code, count in s.failed_by_code.most_common()]
    rows += [
        ["(this try) sent", s.sent],
        ["(this try) settled by earlier tries", s.skipped_already_sent],
        ["(this try) in doubt, settled by replay", s.recovered],
        ["segments billed", s.segments],
    ]
    return str(tabulate([r for r in rows if r[1]], headers=["every recipient", "count"], tablefmt="simple"))


def receipts_table(s: Mapping[str, Any]) -> str:
    """The receipts of a ``DeliveryTracker.summary()`` (also rebuilt from a trigger's event)."""
    tracked = s["tracked"] or 1

    def share(n: int) -> str:
        return f"{100 * n / tracked:.1f}%"

    rows: list[list[Any]] = [["delivered", s["delivered"], share(s["delivered"])]]
    rows += [[f"failed: {code}", n, share(n)] for code, n in s["failed_by_code"].items()]
    rows += [["still pending", s["pending"], share(s["pending"])]]
    if s["untracked"]:
        rows.append(["not tracked (no MessageId)", s["untracked"], ""])
    rate = f"{100 * s['delivery_rate']:.1f}%" if s["delivery_rate"] is not None else "-"
    p50, p95 = s["p50_seconds_to_deliver"], s["p95_seconds_to_deliver"]
    rows += [
        ["delivery rate", rate, ""],
        ["time to deliver p50 / p95", f"{p50}s / {p95}s" if p50 is not None else "-", ""],
        ["segments", s["segments"], ""],
    ]
    return str(tabulate(rows, headers=["receipts", "count", "share"], tablefmt="simple"))
