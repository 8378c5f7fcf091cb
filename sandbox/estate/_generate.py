"""Vectorised generation of the firm's full timeline: every record with the instants its state changes.

The generator plans each record's whole life (an opportunity's stage entries, a time entry's
submission, approval and invoicing, an invoice's payments) up to a horizon after the base clock;
`_views.py` cuts that timeline at `now`. Hidden planning columns start with "_": `_visible_at`
(when the record comes into existence) and `_t_*` instants; NEVER means "does not happen".
Defects are decided here and written to the ground-truth master with the instant they become true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from sandbox.estate._reference import (
    CURRENCIES,
    DAY,
    HOUR,
    LEGAL_ENTITIES,
    MINUTE,
    PAYMENT_TERMS,
    busday_add,
    fx_table,
    holidays,
    numeric_ids,
    rng_for,
    salesforce_ids,
    stripe_ids,
)
from sandbox.estate.schema import (
    DEFAULT_DEFECT_RATES,
    GRACE,
    MONEY,
    UTC_TS,
    VENDORS,
)

NEVER = np.int64(2**62)
LOWER = tuple(c.lower() for c in CURRENCIES)
"""An instant that never comes (about 146,000 years after 1970)."""
BASE_NOW = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_DAYS = 730
INVOICE_RUN_DAY = 11
"""Time-and-materials invoices for month m are raised on day 11 of month m+1 at 10:00 UTC."""

STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation")
PROBABILITY = (10.0, 20.0, 50.0, 75.0)
MODELS = ("Time and Materials", "Fixed Fee", "Retainer")
MODEL_WORDS = ("Implementation", "Transformation Programme", "Managed Advisory")
INDUSTRIES = (
    "Banking",
    "Insurance",
    "Retail",
    "Manufacturing",
    "Healthcare",
    "Energy",
    "Telecommunications",
    "Media",
    "Public Sector",
    "Logistics",
    "Education",
    "Technology",
)
_ADJ = (
    "Acme",
    "Blue",
    "Bright",
    "Cedar",
    "Crimson",
    "Delta",
    "Eagle",
    "Evergreen",
    "Falcon",
    "Global",
    "Golden",
    "Granite",
    "Harbor",
    "Horizon",
    "Iron",
    "Juniper",
    "Keystone",
    "Liberty",
    "Lunar",
    "Maple",
    "Meridian",
    "Noble",
    "Northern",
    "Oak",
    "Orion",
    "Pacific",
    "Pioneer",
    "Quantum",
    "Redwood",
    "River",
    "Sapphire",
    "Silver",
    "Summit",
    "Sterling",
    "Titan",
    "Union",
    "Vertex",
    "Vista",
    "Willow",
    "Zenith",
)
_NOUN = (
    "Analytics",
    "Bank",
    "Brands",
    "Capital",
    "Chemicals",
    "Dynamics",
    "Energy",
    "Engineering",
    "Foods",
    "Freight",
    "Health",
    "Holdings",
    "Industries",
    "Insurance",
    "Labs",
    "Logistics",
    "Media",
    "Metals",
    "Motors",
    "Networks",
    "Partners",
    "Pharma",
    "Power",
    "Retail",
    "Robotics",
    "Software",
    "Systems",
    "Telecom",
    "Textiles",
    "Travel",
    "Ventures",
    "Water",
    "Wireless",
    "Aerospace",
    "Apparel",
    "Biotech",
    "Construction",
    "Estates",
    "Mining",
    "Shipping",
)
_SUFFIX = ("Inc", "Ltd", "GmbH", "Group", "plc", "LLC", "AG", "Corp")


@dataclass
class World:
    """The planned timeline of one estate (hidden columns included) plus its reference data."""

    seed: int
    scale: float
    rates: dict[str, float]
    base_now: datetime
    end: datetime
    masters: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    ground_truth: pl.DataFrame | None = None
    outages: pl.DataFrame | None = None
    legal_entities: pl.DataFrame = field(default_factory=lambda: LEGAL_ENTITIES)
    payment_terms: pl.DataFrame = field(default_factory=lambda: PAYMENT_TERMS)
    holidays: pl.DataFrame | None = None
    fx_rates: pl.DataFrame | None = None


# --- small vector helpers -----------------------------------------------------------------------


def ts(x: np.ndarray) -> pl.Series:
    """int64 microseconds -> UTC datetimes, truncated to whole seconds (as the vendors store them)."""
    x = np.asarray(x, dtype=np.int64)
    return pl.Series(x - x % 1_000_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def dt_(x: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(x, dtype=np.int32)).cast(pl.Date)


def money(cents: np.ndarray) -> pl.Series:
    return (pl.Series(np.asarray(cents, dtype=np.int64)).cast(pl.Decimal(20, 2)) / 100).cast(MONEY)


def amount_str(cents: pl.Expr) -> pl.Expr:
    """Non-negative integer cents -> "123.45"."""
    return pl.concat_str(
        (cents // 100).cast(pl.Utf8), pl.lit("."), (cents % 100).cast(pl.Utf8).str.zfill(2)
    )


def const(value: object, n: int, dtype: pl.DataType | type[pl.DataType] = pl.Utf8) -> pl.Series:
    return pl.repeat(value, n, dtype=dtype, eager=True)


def pick(options: tuple[str, ...] | list[str], idx: np.ndarray) -> pl.Series:
    """options[idx] as a string Series (cheaper than building numpy string arrays)."""
    return pl.Series(list(options), dtype=pl.Utf8).gather(
        pl.Series(np.asarray(idx, dtype=np.int64))
    )


def _pick(u: np.ndarray, rate: float, eligible: np.ndarray, settled: np.ndarray) -> np.ndarray:
    """Rows drawn at `rate` among `eligible`; at least one (a settled one) when the rate is
    positive, so every defect type shows even in a tiny estate."""
    mask = eligible & (u < rate)
    candidates = eligible & settled
    if rate > 0 and not (mask & settled).any() and candidates.any():
        mask[np.argmin(np.where(candidates, u, np.inf))] = True
    return mask


CLEAN = -1
"""Band code of a row without a defect (negative codes below it are not eligible)."""


def _ensure(
    band: np.ndarray,
    rates: list[float],
    u: np.ndarray,
    settled: np.ndarray,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Give every defect band k with rates[k] > 0 at least one settled row (visible at the base
    clock), taken from the clean rows, so each type shows even in a tiny estate."""
    band = band.copy()
    for k, rate in enumerate(rates):
        if rate <= 0 or ((band == k) & settled).any():
            continue
        candidates = (band == CLEAN) & settled
        if allowed is not None and k == 0:
            candidates &= allowed
        if candidates.any():
            band[np.argmin(np.where(candidates, u, np.inf))] = k
    return band


def take(df: pl.DataFrame, idx: np.ndarray) -> pl.DataFrame:
    return df.select(pl.all().gather(pl.Series(idx, dtype=pl.Int64)))


def gather_or_null(ids: pl.Series, idx: np.ndarray) -> pl.Series:
    """ids[idx] with null where idx < 0."""
    s = pl.Series(np.asarray(idx, dtype=np.int64))
    return ids.gather(pl.select(pl.when(s >= 0).then(s)).to_series())


def cat(*parts: str | pl.Series | pl.Expr) -> pl.Series:
    """Concatenate strings and string Series elementwise into one Series."""
    exprs = [p if isinstance(p, pl.Expr) else pl.lit(p) for p in parts]
    return pl.select(pl.concat_str(exprs)).to_series()


def _us(d: datetime) -> int:
    return int(d.timestamp()) * 1_000_000


def _day_of(t: np.ndarray) -> np.ndarray:
    return np.floor_divide(t, DAY)


_CAL_LO = -36_500  # 1870-01-13 .. 2069-12-19: every day the generator can touch
_CAL_DAYS = np.arange(_CAL_LO, -_CAL_LO, dtype=np.int64)
_CAL_MONTH = _CAL_DAYS.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
_MONTH_FIRST_DAY = np.arange(_CAL_MONTH.min(), _CAL_MONTH.max() + 300).astype("datetime64[M]")
_MONTH_FIRST_DAY = _MONTH_FIRST_DAY.astype("datetime64[D]").astype(np.int64)


def _month_start(days: np.ndarray, add_months: np.ndarray | int = 0) -> np.ndarray:
    """First day (days since epoch) of the month `add_months` after the month of `days`."""
    month = _CAL_MONTH[np.asarray(days, dtype=np.int64) - _CAL_LO] + np.asarray(add_months)
    return _MONTH_FIRST_DAY[month - _CAL_MONTH.min()]


def _records(*parts: tuple[str, str, pl.Expr]) -> pl.Expr:
    """A JSON list of {vendor, object, id} from (vendor, object, id expression) triples."""
    pieces: list[pl.Expr | str] = []
    for i, (vendor, obj, id_expr) in enumerate(parts):
        sep = "" if i == 0 else ","
        pieces += [
            pl.lit(f'{sep}{{"vendor":"{vendor}","object":"{obj}","id":"'),
            id_expr,
            pl.lit('"}'),
        ]
    return pl.concat_str([pl.lit("["), *pieces, pl.lit("]")])


def _gt(
    df: pl.DataFrame,
    break_type: str,
    records: pl.Expr,
    cents: pl.Expr,
    currency: pl.Expr,
    injected: pl.Expr,
    detail: pl.Expr,
) -> pl.DataFrame:
    return df.select(
        pl.lit(break_type).alias("break_type"),
        records.alias("records"),
        amount_str(cents.abs()).alias("amount_at_risk"),
        currency.alias("currency"),
        injected.alias("injected_at"),
        pl.lit(None, UTC_TS).alias("resolved_at"),
        detail.alias("detail"),
    )


# --- the generator ------------------------------------------------------------------------------


def generate_world(
    seed: int,
    scale: float,
    defect_rates: dict[str, float] | None = None,
    horizon: timedelta = timedelta(days=120),
) -> World:
    rates = dict(DEFAULT_DEFECT_RATES)
    unknown = set(defect_rates or {}) - set(rates)
    if unknown:
        raise ValueError(f"unknown defect types: {sorted(unknown)}")
    rates.update(defect_rates or {})
    if scale <= 0:
        raise ValueError("scale must be positive")
    base_now = BASE_NOW
    now0 = _us(base_now)
    start = now0 - HISTORY_DAYS * DAY
    end = now0 + int(horizon.total_seconds()) * 1_000_000
    w = World(seed, scale, rates, base_now, base_now + horizon)
    first_year = (base_now - timedelta(days=HISTORY_DAYS + 3 * 365)).year
    w.holidays = holidays(first_year, (base_now + horizon).year + 3)
    w.fx_rates = fx_table(
        seed,
        (base_now - timedelta(days=HISTORY_DAYS + 30)).date(),
        (base_now + horizon + timedelta(days=900)).date(),
    )
    gts: list[pl.DataFrame] = []
    m = w.masters

    # ---------------- accounts
    rng = rng_for(seed, "accounts")
    n_acc = max(6, round(2000 * scale))
    ent = rng.choice(3, n_acc, p=[0.55, 0.25, 0.20])
    term = rng.choice(3, n_acc, p=[0.5, 0.3, 0.2])
    pre = rng.random(n_acc) < 0.85
    acc_created = np.where(
        pre,
        start - rng.integers(1, 3 * 365, n_acc) * DAY,
        start + (rng.random(n_acc) * (end - start - 60 * DAY)).astype(np.int64),
    ) + rng.integers(8 * HOUR, 18 * HOUR, n_acc)
    industry = rng.integers(0, len(INDUSTRIES), n_acc)
    space = len(_ADJ) * len(_NOUN) * len(_SUFFIX)
    code = rng.choice(space * -(-n_acc // space), n_acc, replace=False)  # " 2" only when needed
    profile = rng.choice(3, n_acc, p=[0.6, 0.3, 0.1])  # punctual, late, very late
    batch_payer = rng.random(n_acc) < 0.3
    weight = rng.lognormal(0.0, 0.9, n_acc)
    order = np.argsort(acc_created, kind="stable")
    ent, term, acc_created, industry, code = (
        ent[order],
        term[order],
        acc_created[order],
        industry[order],
        code[order],
    )
    profile, batch_payer, weight = profile[order], batch_payer[order], weight[order]
    base = code % space
    rep = code // space
    acc_name = (
        pl.DataFrame(
            {
                "a": pick(_ADJ, base % len(_ADJ)),
                "n": pick(_NOUN, (base // len(_ADJ)) % len(_NOUN)),
                "s": pick(_SUFFIX, base // (len(_ADJ) * len(_NOUN))),
                "r": rep,
            }
        )
        .select(
            pl.concat_str(
                "a",
                pl.lit(" "),
                "n",
                pl.lit(" "),
                "s",
                pl.when(pl.col("r") > 0)
                .then(pl.concat_str(pl.lit(" "), (pl.col("r") + 1).cast(pl.Utf8)))
                .otherwise(pl.lit("")),
            )
        )
        .to_series()
    )
    acc_id = salesforce_ids("001", np.arange(n_acc))
    acc_ccy = ent.astype(np.int64)  # currency code: index into CURRENCIES

    # ---------------- opportunities
    rng = rng_for(seed, "opportunities")
    span_days = (end - start) / DAY
    n_opp = max(10, round(20000 * scale * span_days / HISTORY_DAYS))
    oa = rng.choice(n_acc, n_opp, p=weight / weight.sum())
    lo = np.maximum(start, acc_created[oa] + DAY)
    o_created = lo + (rng.random(n_opp) * np.maximum(end - lo, HOUR)).astype(np.int64)
    order = np.argsort(o_created, kind="stable")
    oa, o_created = oa[order], o_created[order]
    model = rng.choice(3, n_opp, p=[0.5, 0.3, 0.2])
    term_m = np.select(
        [model == 0, model == 1],
        [rng.integers(3, 13, n_opp), rng.integers(2, 10, n_opp)],
        rng.choice(np.array([6, 12, 12, 12, 24]), n_opp),
    ).astype(np.int32)
    team = np.clip(1 + rng.poisson(0.6, n_opp), 1, 4)
    o_ent = ent[oa]
    rate_units = (
        np.choose(
            o_ent,
            [rng.integers(35, 56, n_opp), rng.integers(28, 45, n_opp), rng.integers(30, 49, n_opp)],
        )
        * 5
    )
    rate_cents = rate_units.astype(np.int64) * 100
    weeks_plan = np.round(term_m * 52 / 12).astype(np.int64)
    fee_cents = rng.integers(10, 61, n_opp).astype(np.int64) * 500 * 100
    amount = np.select(
        [model == 0, model == 1],
        [
            np.round(rate_units * 35 * weeks_plan * team / 100).astype(np.int64) * 100 * 100,
            np.round(
                np.clip(rng.lognormal(np.log(120_000), 0.6, n_opp), 20_000, 1_500_000) / 500
            ).astype(np.int64)
            * 500
            * 100,
        ],
        fee_cents * term_m,
    ).astype(np.int64)
    won = rng.random(n_opp) < 0.40
    lost_at = rng.choice(4, n_opp, p=[0.3, 0.3, 0.25, 0.15])
    last_open = np.where(won, 3, lost_at)  # index of the last open stage entered
    dur = (rng.exponential(11.0, (n_opp, 4)) + 1.0) * DAY
    dur = dur.astype(np.int64)
    stage_t = np.empty((n_opp, 4), np.int64)
    stage_t[:, 0] = o_created
    for k in range(1, 4):
        stage_t[:, k] = np.where(last_open >= k, stage_t[:, k - 1] + dur[:, k - 1], NEVER)
    t_close = stage_t[np.arange(n_opp), last_open] + dur[np.arange(n_opp), last_open]
    first_of_acc = (
        pl.DataFrame({"a": oa})
        .with_row_index("i")
        .group_by("a")
        .agg(pl.col("i").min())["i"]
        .to_numpy()
    )
    is_first = np.zeros(n_opp, bool)
    is_first[first_of_acc] = True
    opp_id = salesforce_ids("006", np.arange(n_opp))
    opp_name = cat(pl.Series(acc_name.to_numpy()[oa]), pl.lit(" - "), pick(MODEL_WORDS, model))
    opp_ccy = acc_ccy[oa]

    # ---------------- defects decided per account and per won deal
    rng = rng_for(seed, "defects-deals")
    won_idx = np.flatnonzero(won)
    # customers: accounts with a won deal
    acc_first_win = np.full(n_acc, NEVER)
    np.minimum.at(acc_first_win, oa[won_idx], t_close[won_idx])
    has_win = acc_first_win < NEVER
    settled = acc_first_win + 200 * DAY <= now0  # old enough for the defect to show at base now
    cust_missing = _pick(rng.random(n_acc), rates["customer_missing_in_erp"], has_win, settled)
    cust_dup = _pick(
        rng.random(n_acc), rates["customer_duplicated_in_erp"], has_win & ~cust_missing, settled
    )
    u = rng.random(n_opp)
    no_project = _pick(u, rates["won_deal_without_project"], won, t_close + 30 * DAY <= now0)
    has_project = won & ~no_project
    # per-project defects, disjoint
    u = rng.random(n_opp)
    r_pwd = rates["project_without_deal"]
    r_pvm = rates["project_value_mismatch"]
    r_cur = rates["currency_mismatch"]
    band = np.select([u < r_pwd, u < r_pwd + r_pvm, u < r_pwd + r_pvm + r_cur], [0, 1, 2], CLEAN)
    band = np.where(has_project, band, -2)
    band[(band == 0) & cust_missing[oa]] = CLEAN
    settled = t_close + 30 * DAY <= now0
    band = _ensure(band, [r_pwd, r_pvm, r_cur], u, settled, ~cust_missing[oa])
    pwd, pvm, wcur = (band == k for k in range(3))
    # The opportunity behind a project_without_deal never reaches Salesforce.
    in_sf = ~pwd
    acc_first_win_sf = np.full(n_acc, NEVER)
    sf_won = np.flatnonzero(won & in_sf)
    np.minimum.at(acc_first_win_sf, oa[sf_won], t_close[sf_won])

    # Salesforce Account
    m["salesforce", "Account"] = pl.DataFrame(
        {
            "Id": acc_id,
            "Name": acc_name,
            "_t_first_win": ts(acc_first_win_sf),
            "Industry": pick(INDUSTRIES, industry),
            "BillingCountry": pick(LEGAL_ENTITIES["country"].to_list(), ent),
            "CurrencyIsoCode": pick(CURRENCIES, acc_ccy),
            "Legal_Entity__c": pick(LEGAL_ENTITIES["code"].to_list(), ent),
            "Payment_Terms__c": pick(PAYMENT_TERMS["name"].to_list(), term),
            "IsDeleted": np.zeros(n_acc, bool),
            "CreatedDate": ts(acc_created),
        }
    ).with_columns(_visible_at=pl.col("CreatedDate"))

    # Salesforce Opportunity (+ history)
    sel = np.flatnonzero(in_sf)
    stage_names = np.array([*STAGES, "Closed Won", "Closed Lost"])
    m["salesforce", "Opportunity"] = pl.DataFrame(
        {
            "Id": opp_id.gather(sel),
            "Name": opp_name.gather(sel),
            "AccountId": acc_id.gather(oa[sel]),
            "Amount": money(amount[sel]),
            "CurrencyIsoCode": pick(CURRENCIES, opp_ccy[sel]),
            "CloseDate": dt_(_day_of(t_close[sel])),
            "Type": pick(("Existing Business", "New Business"), is_first[sel]),
            "Billing_Model__c": pick(MODELS, model[sel]),
            "Term_Months__c": term_m[sel],
            "IsDeleted": np.zeros(len(sel), bool),
            "CreatedDate": ts(o_created[sel]),
            "_t1": ts(stage_t[sel, 1]),
            "_t2": ts(stage_t[sel, 2]),
            "_t3": ts(stage_t[sel, 3]),
            "_t_close": ts(t_close[sel]),
            "_won": won[sel],
        }
    ).with_columns(_visible_at=pl.col("CreatedDate"))
    # history: one row per stage entered, plus the closing row
    hist_parts = []
    for k in range(4):
        s = sel[stage_t[sel, k] < NEVER]
        hist_parts.append((s, np.full(len(s), k), stage_t[s, k]))
    hist_parts.append((sel, np.where(won[sel], 4, 5), t_close[sel]))
    h_opp = np.concatenate([p[0] for p in hist_parts])
    h_stage = np.concatenate([p[1] for p in hist_parts])
    h_t = np.concatenate([p[2] for p in hist_parts])
    order = np.lexsort((h_stage, h_t))
    h_opp, h_stage, h_t = h_opp[order], h_stage[order], h_t[order]
    prob = np.array([*PROBABILITY, 100.0, 0.0])
    m["salesforce", "OpportunityHistory"] = pl.DataFrame(
        {
            "Id": salesforce_ids("008", np.arange(len(h_opp))),
            "OpportunityId": opp_id.gather(h_opp),
            "StageName": pick(list(stage_names), h_stage),
            "Amount": money(amount[h_opp]),
            "CloseDate": dt_(_day_of(t_close[h_opp])),
            "Probability": prob[h_stage],
            "IsDeleted": np.zeros(len(h_opp), bool),
            "CreatedDate": ts(h_t),
            "SystemModstamp": ts(h_t),
        }
    ).with_columns(_visible_at=pl.col("CreatedDate"))

    gts.append(
        _gt(
            pl.DataFrame(
                {
                    "id": opp_id.gather(np.flatnonzero(no_project)),
                    "c": amount[no_project],
                    "cur": pick(CURRENCIES, opp_ccy[no_project]),
                    "t": ts(
                        t_close[no_project]
                        + GRACE["won_deal_without_project"] // timedelta(microseconds=1)
                    ),
                }
            ),
            "won_deal_without_project",
            _records(("salesforce", "Opportunity", pl.col("id"))),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Opportunity won but no Kantata workspace references it"),
        )
    )

    # ---------------- Kantata workspaces
    rng = rng_for(seed, "projects")
    pi = np.flatnonzero(has_project)  # opportunity index of each project
    n_p = len(pi)
    p_ent = o_ent[pi]
    p_created_day = busday_add(_day_of(t_close[pi]), rng.integers(1, 8, n_p), p_ent, w.holidays)
    t_ws = p_created_day * DAY + 9 * HOUR + rng.integers(0, 8 * HOUR, n_p)
    p_start = busday_add(p_created_day + 3, np.zeros(n_p, np.int64), p_ent, w.holidays)
    p_due = _month_start(p_start, term_m[pi]) + (p_start - _month_start(p_start)) - 1
    t_done = (p_due + 1) * DAY + 12 * HOUR + rng.integers(0, 10 * DAY, n_p)
    order = np.argsort(t_ws, kind="stable")
    pi, p_ent, t_ws, p_start, p_due, t_done = (
        pi[order],
        p_ent[order],
        t_ws[order],
        p_start[order],
        p_due[order],
        t_done[order],
    )
    p_model = model[pi]
    p_ccy = opp_ccy[pi]
    ws_id = numeric_ids(100_000, n_p)
    xref_id = numeric_ids(500_000, n_p)
    price = amount[pi].copy()
    vm = pvm[pi]
    factor = np.where(
        rng.random(n_p) < 0.5, rng.uniform(0.7, 0.95, n_p), rng.uniform(1.05, 1.3, n_p)
    )
    price[vm] = (np.round(price[vm] * factor[vm] / 10_000) * 10_000).astype(np.int64)
    price[vm & (price == amount[pi])] += 10_000
    wc = wcur[pi]
    shift = rng.integers(1, 3, n_p)
    ws_ccy = np.where(wc, (p_ccy + shift) % 3, p_ccy)
    n_users = max(8, round(150 * scale))
    creator = numeric_ids(900_000, 3 * n_users).to_numpy()[
        p_ent * n_users + rng.integers(0, n_users, n_p)
    ]
    m["kantata", "workspaces"] = pl.DataFrame(
        {
            "id": ws_id,
            "title": opp_name.gather(pi),
            "archived": np.zeros(n_p, bool),
            "start_date": dt_(p_start),
            "due_date": dt_(p_due),
            "price_in_cents": price,
            "currency": pick(CURRENCIES, ws_ccy),
            "creator_id": creator,
            "external_reference_ids": xref_id.to_frame("x").select(pl.concat_list("x")).to_series(),
            "created_at": ts(t_ws),
            "_t_done": ts(t_done),
        }
    ).with_columns(_visible_at=pl.col("created_at"))
    m["kantata", "external_references"] = pl.DataFrame(
        {
            "id": xref_id,
            "subject_type": const("Workspace", n_p),
            "subject_id": ws_id,
            "service_name": const("Salesforce", n_p),
            "service_model": const("Opportunity", n_p),
            "service_model_ref": opp_id.gather(pi),
            "status": const("synced", n_p),
            "external_status": const("Closed Won", n_p),
            "created_at": ts(t_ws),
            "updated_at": ts(t_ws),
        }
    ).with_columns(_visible_at=pl.col("created_at"))
    ws_frame = pl.DataFrame(
        {
            "ws": ws_id,
            "opp": opp_id.gather(pi),
            "c": amount[pi],
            "price": price,
            "cur": pick(CURRENCIES, p_ccy),
            "wcur": pick(CURRENCIES, ws_ccy),
            "t": ts(t_ws),
        }
    )
    gts.append(
        _gt(
            ws_frame.filter(pl.Series(pwd[pi])),
            "project_without_deal",
            _records(("kantata", "workspaces", pl.col("ws"))),
            pl.col("price"),
            pl.col("wcur"),
            pl.col("t"),
            pl.concat_str(
                pl.lit("Workspace references opportunity "),
                pl.col("opp"),
                pl.lit(" which does not exist"),
            ),
        )
    )
    gts.append(
        _gt(
            ws_frame.filter(pl.Series(vm)),
            "project_value_mismatch",
            _records(
                ("salesforce", "Opportunity", pl.col("opp")),
                ("kantata", "workspaces", pl.col("ws")),
            ),
            pl.col("price") - pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Workspace price differs from the opportunity amount"),
        )
    )
    gts.append(
        _gt(
            ws_frame.filter(pl.Series(wc)),
            "currency_mismatch",
            _records(
                ("salesforce", "Opportunity", pl.col("opp")),
                ("kantata", "workspaces", pl.col("ws")),
            ),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.concat_str(
                pl.lit("Opportunity in "), pl.col("cur"), pl.lit(", workspace in "), pl.col("wcur")
            ),
        )
    )

    # ---------------- time entries (weekly, per consultant)
    rng = rng_for(seed, "time")
    p_team = team[pi]
    wd = (p_start + 3) % 7  # Monday = 0
    first_fri = p_start - wd + 4
    n_weeks = np.maximum((p_due - first_fri) // 7 + 1, 1)
    per_p = n_weeks * p_team
    n_te = int(per_p.sum())
    te_p = np.repeat(np.arange(n_p), per_p)
    offs = np.arange(n_te) - np.repeat(np.cumsum(per_p) - per_p, per_p)
    te_week = offs // np.repeat(p_team, per_p)
    te_member = offs % np.repeat(p_team, per_p)
    te_day = first_fri[te_p] + 7 * te_week
    user0 = rng.integers(0, n_users, n_p)
    te_user = p_ent[te_p] * n_users + (user0[te_p] + te_member) % n_users
    minutes = (np.clip(np.round(rng.normal(28, 8, n_te) * 4), 16, 160) * 15).astype(np.int32)
    te_rate = rate_cents[pi][te_p]
    te_cost = (te_rate * 45 // 100 // 100) * 100
    billable = p_model[te_p] == 0
    te_created = te_day * DAY + 16 * HOUR + rng.integers(0, 5 * HOUR, n_te)
    te_approved = te_created + DAY + rng.integers(0, 7 * DAY, n_te)
    te_month = _month_start(te_day)
    te_run = (_month_start(te_day, 1) + INVOICE_RUN_DAY - 1) * DAY + 10 * HOUR
    te_cents = minutes.astype(np.int64) * te_rate // 60
    u = rng.random(n_te)
    band = np.where(billable, np.where(u < rates["approved_time_not_invoiced"], 0, CLEAN), -2)
    band = _ensure(band, [rates["approved_time_not_invoiced"]], u, te_run <= now0)
    leak = band == 0
    invoiced = billable & ~leak
    order = np.argsort(te_created, kind="stable")
    te_ids = np.empty(n_te, np.int64)
    te_ids[order] = np.arange(n_te) + 10_000_000
    te_id = pl.Series(te_ids).cast(pl.Utf8)
    user_ids = numeric_ids(900_000, 3 * n_users)

    # ---------------- Kantata invoices: T&M monthly, milestones on completion, retainers monthly
    # T&M groups
    tm = pl.DataFrame(
        {
            "p": te_p[invoiced],
            "month": te_month[invoiced],
            "c": te_cents[invoiced],
            "run": te_run[invoiced],
        }
    )
    tm_inv = (
        tm.group_by("p", "month").agg(pl.col("c").sum(), pl.col("run").first()).sort("p", "month")
    )
    # milestones
    rng = rng_for(seed, "milestones")
    ff = np.flatnonzero(p_model == 1)
    n_ms_p = rng.integers(2, 6, len(ff))
    ms_p = np.repeat(ff, n_ms_p)
    n_ms = len(ms_p)
    ms_k = np.arange(n_ms) - np.repeat(np.cumsum(n_ms_p) - n_ms_p, n_ms_p)
    ms_n = np.repeat(n_ms_p, n_ms_p)
    wts = rng.uniform(0.5, 1.5, n_ms)
    wsum = np.zeros(n_p)
    np.add.at(wsum, ms_p, wts)
    contract = amount[pi]
    ms_price = (np.floor(contract[ms_p] * wts / wsum[ms_p] / 10_000) * 10_000).astype(np.int64)
    ms_sum = np.zeros(n_p, np.int64)
    np.add.at(ms_sum, ms_p, ms_price)
    last = ms_k == ms_n - 1
    ms_price[last] += contract[ms_p[last]] - ms_sum[ms_p[last]]
    span = p_due[ms_p] - p_start[ms_p]
    ms_due = p_start[ms_p] + (span * (ms_k + 1)) // ms_n
    ms_startd = p_start[ms_p] + (span * ms_k) // ms_n
    t_ms_started = np.maximum(ms_startd * DAY + 9 * HOUR, t_ws[ms_p] + HOUR)
    t_ms_done = np.maximum(
        (ms_due + rng.integers(-5, 11, n_ms)) * DAY + 15 * HOUR, t_ms_started + DAY
    )
    u = rng.random(n_ms)
    band = np.where(u < rates["completed_milestone_not_invoiced"], 0, CLEAN)
    settled = t_ms_done + 10 * DAY <= now0
    band = _ensure(band, [rates["completed_milestone_not_invoiced"]], u, settled)
    ms_leak = band == 0
    t_ms_inv = np.where(
        ms_leak, NEVER, (_day_of(t_ms_done) + rng.integers(1, 6, n_ms)) * DAY + 10 * HOUR
    )
    # retainers
    rt = np.flatnonzero(p_model == 2)
    rt_n = term_m[pi][rt].astype(np.int64)
    rt_p = np.repeat(rt, rt_n)
    rt_k = np.arange(len(rt_p)) - np.repeat(np.cumsum(rt_n) - rt_n, rt_n)
    rt_day = np.where(rt_k == 0, p_start[rt_p], _month_start(p_start[rt_p], rt_k))
    rt_t = rt_day * DAY + 10 * HOUR
    rt_c = fee_cents[pi][rt_p]

    ms_has_inv = ~ms_leak
    inv = pl.concat(
        [
            tm_inv.select(
                pl.col("p").cast(pl.Int64),
                pl.col("run").alias("t"),
                pl.col("c").cast(pl.Int64),
                pl.lit(0).alias("kind"),
                pl.col("month").cast(pl.Int64).alias("key"),
            ),
            pl.DataFrame(
                {
                    "p": ms_p[ms_has_inv].astype(np.int64),
                    "t": t_ms_inv[ms_has_inv],
                    "c": ms_price[ms_has_inv],
                    "kind": 1,
                    "key": np.flatnonzero(ms_has_inv).astype(np.int64),
                }
            ),
            pl.DataFrame(
                {
                    "p": rt_p.astype(np.int64),
                    "t": rt_t,
                    "c": rt_c,
                    "kind": 2,
                    "key": rt_k.astype(np.int64),
                }
            ),
        ],
        how="vertical_relaxed",
    ).sort("t", "p", "kind", "key")
    n_inv = inv.height
    inv_p = inv["p"].to_numpy()
    inv_t = inv["t"].to_numpy()
    inv_c = inv["c"].to_numpy()
    k_inv_id = numeric_ids(3_000_000, n_inv)
    inv = inv.with_columns(kid=k_inv_id, i=pl.int_range(n_inv))
    p_acc = oa[pi]
    inv_acc = p_acc[inv_p]
    inv_term = term[inv_acc]
    term_days = PAYMENT_TERMS["days"].to_numpy().astype(np.int64)
    inv_day = _day_of(inv_t)
    inv_due = inv_day + term_days[inv_term]

    # time entries -> invoice ids
    # a T&M invoice per (project, month): find each entry's by a sorted-key search
    tm_rows = inv.filter(pl.col("kind") == 0)
    tm_key = tm_rows["p"].to_numpy() * 1_000_000 + tm_rows["key"].to_numpy()
    key_order = np.argsort(tm_key, kind="stable")
    te_key = te_p.astype(np.int64) * 1_000_000 + te_month.astype(np.int64)
    pos = np.clip(np.searchsorted(tm_key[key_order], te_key), 0, max(len(tm_key) - 1, 0))
    found = invoiced & (len(tm_key) > 0)
    if len(tm_key):
        found &= tm_key[key_order][pos] == te_key
    row = np.where(found, tm_rows["i"].to_numpy()[key_order][pos] if len(tm_key) else -1, -1)
    te_inv_t = np.where(found, inv_t[np.maximum(row, 0)], NEVER)
    te_inv_id = gather_or_null(k_inv_id, row)
    m["kantata", "time_entries"] = pl.DataFrame(
        {
            "id": te_id,
            "workspace_id": ws_id.gather(te_p),
            "user_id": user_ids.gather(te_user),
            "story_id": pl.Series([None] * n_te, dtype=pl.Utf8),
            "date_performed": dt_(te_day),
            "time_in_minutes": minutes,
            "billable": billable,
            "rate_in_cents": te_rate,
            "cost_rate_in_cents": te_cost,
            "currency": pick(CURRENCIES, p_ccy[te_p]),
            "_invoice_id": te_inv_id,
            "created_at": ts(te_created),
            "_t_approved": ts(te_approved),
            "_t_invoiced": ts(te_inv_t),
        }
    ).with_columns(_visible_at=pl.col("created_at"))
    gts.append(
        _gt(
            pl.DataFrame(
                {
                    "id": te_id.filter(pl.Series(leak)),
                    "c": te_cents[leak],
                    "cur": pick(CURRENCIES, p_ccy[te_p][leak]),
                    "t": ts(te_run[leak]),
                }
            ),
            "approved_time_not_invoiced",
            _records(("kantata", "time_entries", pl.col("id"))),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Approved billable time missed its monthly invoice run"),
        )
    )
    # the entry-level arrays are the largest temporaries: free them before the next stages
    del te_p, offs, te_week, te_member, te_day, te_user, minutes, te_rate, te_cost, te_created
    del te_approved, te_month, te_run, te_cents, leak, te_ids, te_id, te_key, pos, found, row
    del te_inv_t, te_inv_id, tm, tm_inv, billable, invoiced

    # stories (milestones)
    ms_inv_idx = np.full(n_ms, -1, np.int64)
    ms_inv_rows = inv.filter(pl.col("kind") == 1)
    ms_inv_idx[ms_inv_rows["key"].to_numpy()] = ms_inv_rows["i"].to_numpy()
    st_id = numeric_ids(7_000_000, n_ms)
    m["kantata", "stories"] = pl.DataFrame(
        {
            "id": st_id,
            "workspace_id": ws_id.gather(ms_p),
            "title": cat("Milestone ", pl.Series(ms_k + 1).cast(pl.Utf8)),
            "story_type": const("milestone", n_ms),
            "price_in_cents": ms_price,
            "currency": pick(CURRENCIES, p_ccy[ms_p]),
            "start_date": dt_(ms_startd),
            "due_date": dt_(ms_due),
            "_invoice_id": gather_or_null(k_inv_id, ms_inv_idx),
            "created_at": ts(t_ws[ms_p] + MINUTE),
            "_t_started": ts(t_ms_started),
            "_t_completed": ts(t_ms_done),
            "_t_invoiced": ts(t_ms_inv),
        }
    ).with_columns(_visible_at=pl.col("created_at"))
    gts.append(
        _gt(
            pl.DataFrame(
                {
                    "id": st_id.filter(pl.Series(ms_leak)),
                    "c": ms_price[ms_leak],
                    "cur": pick(CURRENCIES, p_ccy[ms_p][ms_leak]),
                    "t": ts(t_ms_done[ms_leak] + 10 * DAY),
                }
            ),
            "completed_milestone_not_invoiced",
            _records(("kantata", "stories", pl.col("id"))),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Milestone completed but never invoiced"),
        )
    )

    # ---------------- NetSuite customers, jobs; Stripe customers
    rng = rng_for(seed, "customers")
    cust_acc = np.flatnonzero(has_win & ~cust_missing)
    n_c = len(cust_acc)
    c_day = busday_add(
        _day_of(acc_first_win[cust_acc]), rng.integers(1, 6, n_c), ent[cust_acc], w.holidays
    )
    c_t = c_day * DAY + 9 * HOUR + rng.integers(0, 9 * HOUR, n_c)
    dup_of = np.flatnonzero(cust_dup[cust_acc])
    dup_t = (
        c_t[dup_of]
        + rng.integers(20, 200, len(dup_of)) * DAY
        + rng.integers(0, 8 * HOUR, len(dup_of))
    )
    all_acc = np.concatenate([cust_acc, cust_acc[dup_of]])
    all_t = np.concatenate([c_t, dup_t])
    is_dup = np.concatenate([np.zeros(n_c, bool), np.ones(len(dup_of), bool)])
    order = np.argsort(all_t, kind="stable")
    cust_ids_sorted = np.empty(len(all_t), np.int64)
    cust_ids_sorted[order] = np.arange(len(all_t)) + 1000
    cust_id_all = pl.Series(cust_ids_sorted).cast(pl.Utf8)
    acc_cust = np.full(n_acc, -1, np.int64)  # account -> row of its (original) NetSuite customer
    acc_cust[cust_acc] = np.arange(n_c)
    sub_ids = LEGAL_ENTITIES["netsuite_subsidiary_id"].to_list()
    cur_ids = LEGAL_ENTITIES["netsuite_currency_id"].to_list()
    term_ids = PAYMENT_TERMS["netsuite_term_id"].to_list()
    m["netsuite", "customer"] = pl.DataFrame(
        {
            "id": cust_id_all,
            "entityid": cat(pl.lit("C"), cust_id_all),
            "companyname": acc_name.gather(all_acc),
            "externalid": pl.Series(
                np.where(is_dup, None, acc_id.to_numpy()[all_acc]), dtype=pl.Utf8
            ),
            "subsidiary": pick(sub_ids, ent[all_acc]),
            "currency": pick(cur_ids, ent[all_acc]),
            "terms": pick(term_ids, term[all_acc]),
            "email": cat(pl.lit("ap+"), cust_id_all, pl.lit("@example.com")),
            "isinactive": np.zeros(len(all_acc), bool),
            "datecreated": ts(all_t),
            "lastmodifieddate": ts(all_t),
        }
    ).with_columns(_visible_at=pl.col("datecreated"))
    m["netsuite", "customer"] = take(m["netsuite", "customer"], np.argsort(cust_ids_sorted))
    dup_frame = pl.DataFrame(
        {
            "acc": acc_id.gather(cust_acc[dup_of]),
            "orig": cust_id_all.gather(dup_of),
            "dup": cust_id_all[n_c:],
            "t": ts(dup_t),
            "cur": pick(CURRENCIES, acc_ccy[cust_acc[dup_of]]),
        }
    )
    gts.append(
        _gt(
            dup_frame,
            "customer_duplicated_in_erp",
            _records(
                ("salesforce", "Account", pl.col("acc")),
                ("netsuite", "customer", pl.col("orig")),
                ("netsuite", "customer", pl.col("dup")),
            ),
            pl.lit(0, pl.Int64),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("A second ERP customer with the same name and no external id"),
        )
    )
    miss = np.flatnonzero(cust_missing)
    first_won_amount = (
        pl.DataFrame({"a": oa[won_idx], "t": t_close[won_idx], "c": amount[won_idx]})
        .sort("t")
        .group_by("a")
        .agg(pl.col("c").first())
    )
    gts.append(
        _gt(
            pl.DataFrame(
                {
                    "a": miss,
                    "id": acc_id.gather(miss),
                    "cur": pick(CURRENCIES, acc_ccy[miss]),
                    "t": ts(
                        acc_first_win[miss]
                        + GRACE["customer_missing_in_erp"] // timedelta(microseconds=1)
                    ),
                }
            ).join(first_won_amount, on="a", how="left", maintain_order="left"),
            "customer_missing_in_erp",
            _records(("salesforce", "Account", pl.col("id"))),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Account has a won deal but no ERP customer with its id as externalid"),
        )
    )
    rng = rng_for(seed, "stripe-customers")
    sc_t = c_t + rng.integers(5 * MINUTE, 4 * HOUR, n_c)
    order = np.argsort(sc_t, kind="stable")
    sc_id = stripe_ids("cus", np.arange(n_c), 1)

    m["stripe", "customers"] = pl.DataFrame(
        {
            "id": sc_id,
            "object": const("customer", n_c),
            "name": acc_name.gather(cust_acc),
            "email": cat(pl.lit("ap+"), cust_id_all[:n_c], pl.lit("@example.com")),
            "currency": pick(LOWER, acc_ccy[cust_acc]),
            "livemode": np.zeros(n_c, bool),
            "metadata": cust_id_all[:n_c].to_frame("netsuite_id").to_struct("metadata"),
            "created": ts(sc_t),
            "_seq": np.arange(n_c),
        }
    ).with_columns(_visible_at=pl.col("created"))
    m["stripe", "customers"] = take(m["stripe", "customers"], order)

    # jobs
    rng = rng_for(seed, "jobs")
    jp = np.flatnonzero(acc_cust[p_acc] >= 0)
    job_t = t_ws[jp] + rng.integers(2 * HOUR, 30 * HOUR, len(jp))
    order = np.argsort(job_t, kind="stable")
    jp, job_t = jp[order], job_t[order]
    job_id = numeric_ids(50_000, len(jp))
    p_job = np.full(n_p, -1, np.int64)
    p_job[jp] = np.arange(len(jp))
    m["netsuite", "job"] = pl.DataFrame(
        {
            "id": job_id,
            "entityid": cat(pl.lit("PRJ-"), ws_id.gather(jp)),
            "companyname": opp_name.gather(pi[jp]),
            "externalid": ws_id.gather(jp),
            "parent": gather_or_null(cust_id_all, acc_cust[p_acc[jp]]),
            "subsidiary": pick(sub_ids, p_ent[jp]),
            "currency": pick(cur_ids, p_ent[jp]),
            "startdate": dt_(p_start[jp]),
            "projectedenddate": dt_(p_due[jp]),
            "datecreated": ts(job_t),
            "_t_done": ts(np.maximum(t_done[jp], job_t + HOUR)),
        }
    ).with_columns(_visible_at=pl.col("datecreated"))

    # ---------------- ERP invoices, billing invoices, defects at invoice level
    rng = rng_for(seed, "invoices")
    has_cust = acc_cust[inv_acc] >= 0
    u = rng.random(n_inv)
    edges = np.cumsum(
        [
            rates["invoice_amount_mismatch"],
            rates["invoice_missing_in_billing"],
            rates["invoice_missing_in_erp"],
            rates["invoice_status_mismatch"],
            rates["currency_mismatch"],
            rates["invoice_overdue"],
        ]
    )
    bucket = np.searchsorted(edges, u, side="right")  # 0..5 defects, 6 clean
    bucket = np.where(bucket == 6, CLEAN, bucket)
    bucket = _ensure(bucket, [edges[0], *np.diff(edges)[:4]], u, inv_t + 20 * DAY <= now0)
    bucket = np.where(bucket == CLEAN, 6, bucket)
    bucket = np.where(has_cust, bucket, 7)  # 7: no ERP customer -> held in the PSA
    amt_mm, miss_bill, miss_erp, stat_mm, cur_mm, never_pay = (bucket == k for k in range(6))
    in_ns = has_cust & ~miss_erp
    in_stripe = has_cust & ~miss_bill
    t_ns = inv_t + rng.integers(1 * HOUR, 20 * HOUR, n_inv)
    ns_total = inv_c.copy()
    f = np.where(
        rng.random(n_inv) < 0.5, rng.uniform(0.8, 0.95, n_inv), rng.uniform(1.05, 1.2, n_inv)
    )
    ns_total[amt_mm] = np.round(inv_c[amt_mm] * f[amt_mm]).astype(np.int64)
    ns_total[amt_mm & (ns_total == inv_c)] += 100
    t_st = np.where(
        miss_erp,
        inv_t + rng.integers(1 * HOUR, 20 * HOUR, n_inv),
        t_ns + rng.integers(5 * MINUTE, 3 * HOUR, n_inv),
    )
    inv_ccy = p_ccy[inv_p]
    st_ccy = inv_ccy.copy()
    st_ccy[cur_mm] = (inv_ccy[cur_mm] + rng.integers(1, 3, int(cur_mm.sum()))) % 3
    t_void = np.where(stat_mm, t_st + rng.integers(1, 11, n_inv) * DAY, NEVER)
    void_kind = rng.random(n_inv) < 0.5  # void vs uncollectible

    # payments: who pays what, when
    rng = rng_for(seed, "payments")
    payable = in_ns & in_stripe & ((bucket == 0) | (bucket == 6))
    prof = profile[inv_acc]
    delay = np.select(
        [prof == 0, prof == 1],
        [rng.integers(-20, 4, n_inv), rng.integers(5, 61, n_inv)],
        rng.integers(30, 151, n_inv),
    )
    pay1 = (
        np.maximum(inv_due + delay, _day_of(t_st) + 1) * DAY
        + 8 * HOUR
        + rng.integers(0, 10 * HOUR, n_inv)
    )
    partial = (rng.random(n_inv) < 0.1) & (ns_total >= 1000)
    share = rng.uniform(0.3, 0.8, n_inv)
    a1 = np.where(partial, np.round(ns_total * share).astype(np.int64), ns_total)
    a2 = ns_total - a1
    pay2 = pay1 + rng.integers(10, 46, n_inv) * DAY
    ev_inv = np.concatenate([np.flatnonzero(payable), np.flatnonzero(payable & partial)])
    ev_t = np.concatenate([pay1[payable], pay2[payable & partial]])
    ev_a = np.concatenate([a1[payable], a2[payable & partial]])
    ev_part = np.concatenate(
        [np.zeros(int(payable.sum()), np.int8), np.ones(int((payable & partial).sum()), np.int8)]
    )
    ev = pl.DataFrame(
        {
            "inv": ev_inv.astype(np.int64),
            "t": ev_t,
            "a": ev_a,
            "part": ev_part,
            "p": inv_p[ev_inv].astype(np.int64),
            "acc": inv_acc[ev_inv].astype(np.int64),
            "batch": batch_payer[inv_acc[ev_inv]] & (prof[ev_inv] > 0) & (ev_part == 0),
        }
    ).with_columns(
        # batch payers settle a project's invoices of the same fortnight together
        key=pl.when(pl.col("batch"))
        .then(pl.col("p") * 1_000_000 + pl.col("t") // (14 * DAY))
        .otherwise(-(pl.col("inv") * 2 + pl.col("part").cast(pl.Int64)) - 1)
    )
    pay = (
        ev.group_by("key")
        .agg(
            pl.col("t").max(),
            pl.col("a").sum(),
            pl.col("acc").first(),
            pl.col("inv").min().alias("first_inv"),
            pl.len().alias("n_apps"),
        )
        .sort("t", "first_inv", "key")
        .with_row_index("pay")
    )
    ev = ev.join(pay.select("key", "pay", pl.col("t").alias("pt")), on="key", how="left").sort(
        "pay", "inv"
    )
    n_pay = pay.height
    u = rng.random(n_pay)
    r_dup, r_un = rates["duplicate_payment"], rates["unapplied_cash"]
    band = np.select([u < r_dup, u < r_dup + r_un], [0, 1], CLEAN)
    band = _ensure(band, [r_dup, r_un], u, pay["t"].to_numpy() + 6 * DAY <= now0)
    dup, unapplied = band == 0, band == 1
    pay = pay.with_columns(dup=pl.Series(dup), unapplied=pl.Series(unapplied))
    applied_ev = ev.join(pay.filter(~pl.col("unapplied")).select("pay"), on="pay", how="semi")
    # per-invoice application instants (at most two parts) as planned
    inv_paid = applied_ev.group_by("inv").agg(
        pl.col("pt").filter(pl.col("part") == 0).first().alias("t1"),
        pl.col("a").filter(pl.col("part") == 0).first().alias("a1"),
        pl.col("pt").filter(pl.col("part") == 1).first().alias("t2"),
        pl.col("a").filter(pl.col("part") == 1).first().alias("a2"),
    )
    ip = pl.DataFrame({"inv": np.arange(n_inv, dtype=np.int64)}).join(
        inv_paid, on="inv", how="left", maintain_order="left"
    )
    ap_t1 = ip["t1"].fill_null(NEVER).to_numpy()
    ap_a1 = ip["a1"].fill_null(0).to_numpy()
    ap_t2 = ip["t2"].fill_null(NEVER).to_numpy()
    ap_a2 = ip["a2"].fill_null(0).to_numpy()
    full_t = np.where(
        ap_a1 + ap_a2 >= ns_total, np.maximum(ap_t1, np.where(ap_a2 > 0, ap_t2, 0)), NEVER
    )
    full_t = np.where(ap_a1 == 0, NEVER, full_t)

    # Kantata invoices
    term_names = PAYMENT_TERMS["name"].to_list()
    m["kantata", "invoices"] = pl.DataFrame(
        {
            "id": k_inv_id,
            "user_invoice_number": cat(pl.lit("KI-"), k_inv_id),
            "invoice_date": dt_(inv_day),
            "due_date": dt_(inv_due),
            "draft": np.zeros(n_inv, bool),
            "balance_in_cents": inv_c,
            "currency": pick(CURRENCIES, inv_ccy),
            "payment_schedule": pick(term_names, inv_term),
            "workspace_ids": ws_id.gather(inv_p)
            .to_frame("w")
            .select(pl.concat_list("w"))
            .to_series(),
            "created_at": ts(inv_t),
            "_t_paid": ts(full_t),
        }
    ).with_columns(_visible_at=pl.col("created_at"))

    # NetSuite invoices
    ns_sel = np.flatnonzero(in_ns)
    order = np.argsort(t_ns[ns_sel], kind="stable")
    ns_sel = ns_sel[order]
    ns_inv_of = np.full(n_inv, -1, np.int64)
    ns_inv_ids = numeric_ids(1_000_000, len(ns_sel))
    ns_inv_of[ns_sel] = np.arange(len(ns_sel))
    m["netsuite", "transaction"] = pl.DataFrame(
        {
            "id": ns_inv_ids,
            "tranid": cat(
                pl.lit("INV-"), pl.Series(np.arange(len(ns_sel)) + 1).cast(pl.Utf8).str.zfill(7)
            ),
            "type": const("CustInvc", len(ns_sel)),
            "entity": gather_or_null(cust_id_all, acc_cust[inv_acc[ns_sel]]),
            "job": gather_or_null(job_id, p_job[inv_p[ns_sel]]),
            "externalid": k_inv_id.gather(ns_sel),
            "trandate": dt_(inv_day[ns_sel]),
            "duedate": dt_(inv_due[ns_sel]),
            "currency": pick(cur_ids, p_ent[inv_p[ns_sel]]),
            "exchangerate": const("1", len(ns_sel)).cast(pl.Decimal(18, 6)),
            "foreigntotal": money(ns_total[ns_sel]),
            "foreignpaymentamountused": const(None, len(ns_sel), MONEY),
            "foreignpaymentamountunused": const(None, len(ns_sel), MONEY),
            "subsidiary": pick(sub_ids, p_ent[inv_p[ns_sel]]),
            "terms": pick(term_ids, inv_term[ns_sel]),
            "memo": cat(pl.lit("Kantata invoice "), k_inv_id.gather(ns_sel)),
            "createddate": ts(t_ns[ns_sel]),
            "_total_cents": ns_total[ns_sel],
            "_t1": ts(ap_t1[ns_sel]),
            "_a1": ap_a1[ns_sel],
            "_t2": ts(ap_t2[ns_sel]),
            "_a2": ap_a2[ns_sel],
        }
    ).with_columns(_visible_at=pl.col("createddate"))

    # Stripe invoices
    si_sel = np.flatnonzero(in_stripe)
    order = np.argsort(t_st[si_sel], kind="stable")
    si_sel = si_sel[order]
    si_id = stripe_ids("in", np.arange(len(si_sel)), 2)
    si_of = np.full(n_inv, -1, np.int64)
    si_of[si_sel] = np.arange(len(si_sel))
    si_total = np.where(miss_erp, inv_c, ns_total)
    m["stripe", "invoices"] = pl.DataFrame(
        {
            "id": si_id,
            "object": const("invoice", len(si_sel)),
            "customer": gather_or_null(sc_id, acc_cust[inv_acc[si_sel]]),
            "number": cat(
                pl.lit("NW-"), pl.Series(np.arange(len(si_sel)) + 1).cast(pl.Utf8).str.zfill(7)
            ),
            "collection_method": const("send_invoice", len(si_sel)),
            "currency": pick(LOWER, st_ccy[si_sel]),
            "amount_due": si_total[si_sel],
            "total": si_total[si_sel],
            "due_date": ts(inv_due[si_sel] * DAY),
            "livemode": np.zeros(len(si_sel), bool),
            "metadata": gather_or_null(ns_inv_ids, ns_inv_of[si_sel])
            .to_frame("netsuite_id")
            .to_struct("metadata"),
            "created": ts(t_st[si_sel]),
            "_t1": ts(ap_t1[si_sel]),
            "_a1": ap_a1[si_sel],
            "_t2": ts(ap_t2[si_sel]),
            "_a2": ap_a2[si_sel],
            "_t_void": ts(t_void[si_sel]),
            "_t_paid": ts(full_t[si_sel]),
            "_void_kind": pick(("uncollectible", "void"), void_kind[si_sel]),
            "_seq": np.arange(len(si_sel)),
        }
    ).with_columns(_visible_at=pl.col("created"))

    inv_gt = pl.DataFrame(
        {
            "k": k_inv_id,
            "ns": gather_or_null(ns_inv_ids, ns_inv_of),
            "si": gather_or_null(si_id, si_of),
            "c": inv_c,
            "nsc": ns_total,
            "cur": pick(CURRENCIES, inv_ccy),
            "scur": pick(CURRENCIES, st_ccy),
            "t_ns": ts(t_ns),
            "t_st": ts(t_st),
            "t_inv": ts(inv_t),
            "t_void": ts(t_void),
            "vk": pick(("uncollectible", "void"), void_kind),
        }
    )
    three_days = 3 * DAY
    gts += [
        _gt(
            inv_gt.filter(pl.Series(amt_mm)),
            "invoice_amount_mismatch",
            _records(
                ("kantata", "invoices", pl.col("k")), ("netsuite", "transaction", pl.col("ns"))
            ),
            pl.col("nsc") - pl.col("c"),
            pl.col("cur"),
            pl.col("t_ns"),
            pl.lit(
                "ERP invoice total differs from the PSA invoice (time, milestones or retainer fee)"
            ),
        ),
        _gt(
            inv_gt.filter(pl.Series(miss_bill)),
            "invoice_missing_in_billing",
            _records(("netsuite", "transaction", pl.col("ns"))),
            pl.col("nsc"),
            pl.col("cur"),
            pl.col("t_ns") + pl.duration(microseconds=three_days),
            pl.lit("ERP invoice never reached billing"),
        ),
        _gt(
            inv_gt.filter(pl.Series(miss_erp)),
            "invoice_missing_in_erp",
            _records(("kantata", "invoices", pl.col("k")), ("stripe", "invoices", pl.col("si"))),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t_inv") + pl.duration(microseconds=three_days),
            pl.lit("Invoice raised in the PSA and billed in Stripe but absent from the ERP"),
        ),
        _gt(
            inv_gt.filter(pl.Series(bucket == 7)),
            "invoice_missing_in_erp",
            _records(("kantata", "invoices", pl.col("k"))),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t_inv") + pl.duration(microseconds=three_days),
            pl.lit("PSA invoice held: its customer does not exist in the ERP"),
        ),
        _gt(
            inv_gt.filter(pl.Series(stat_mm)),
            "invoice_status_mismatch",
            _records(
                ("netsuite", "transaction", pl.col("ns")), ("stripe", "invoices", pl.col("si"))
            ),
            pl.col("nsc"),
            pl.col("cur"),
            pl.col("t_void"),
            pl.concat_str(pl.lit("Open in the ERP, "), pl.col("vk"), pl.lit(" in billing")),
        ),
        _gt(
            inv_gt.filter(pl.Series(cur_mm)),
            "currency_mismatch",
            _records(
                ("netsuite", "transaction", pl.col("ns")), ("stripe", "invoices", pl.col("si"))
            ),
            pl.col("nsc"),
            pl.col("cur"),
            pl.col("t_st"),
            pl.concat_str(
                pl.lit("ERP invoice in "),
                pl.col("cur"),
                pl.lit(", billing invoice in "),
                pl.col("scur").str.to_lowercase(),
            ),
        ),
    ]

    # ---------------- payments: NetSuite CustPymt + links, Stripe payment intents + invoice payments
    rng = rng_for(seed, "payment-rows")
    pay_t = pay["t"].to_numpy()
    pay_a = pay["a"].to_numpy()
    pay_acc = pay["acc"].to_numpy()
    dup_idx = np.flatnonzero(dup)
    dup_t = (
        pay_t[dup_idx]
        + rng.integers(1, 6, len(dup_idx)) * DAY
        + rng.integers(0, 6 * HOUR, len(dup_idx))
    )
    all_t = np.concatenate([pay_t, dup_t])
    src = np.concatenate([np.arange(n_pay), dup_idx])  # the payment each row copies
    is_dup_row = np.concatenate([np.zeros(n_pay, bool), np.ones(len(dup_idx), bool)])
    order = np.argsort(all_t, kind="stable")
    row_ids = np.empty(len(all_t), np.int64)
    row_ids[order] = np.arange(len(all_t)) + 5_000_000
    pym_id = pl.Series(row_ids).cast(pl.Utf8)
    pi_id = stripe_ids("pi", row_ids - 5_000_000, 3)
    memo = cat(pl.lit("REM-"), pl.Series(np.arange(n_pay) + 1).cast(pl.Utf8).str.zfill(8))
    unapplied_row = np.concatenate([unapplied, np.ones(len(dup_idx), bool)])
    amt = pay_a[src]
    p_ent_pay = ent[pay_acc[src]]
    pym = pl.DataFrame(
        {
            "id": pym_id,
            "tranid": cat(
                pl.lit("PYMT-"), pl.Series(row_ids - 5_000_000 + 1).cast(pl.Utf8).str.zfill(7)
            ),
            "type": const("CustPymt", len(src)),
            "entity": gather_or_null(cust_id_all, acc_cust[pay_acc[src]]),
            "job": pl.Series([None] * len(src), dtype=pl.Utf8),
            "externalid": pl.Series([None] * len(src), dtype=pl.Utf8),
            "trandate": dt_(_day_of(all_t)),
            "duedate": const(None, len(src), pl.Date),
            "currency": pick(cur_ids, p_ent_pay),
            "exchangerate": const("1", len(src)).cast(pl.Decimal(18, 6)),
            "foreigntotal": money(amt),
            "foreignpaymentamountused": money(np.where(unapplied_row, 0, amt)),
            "foreignpaymentamountunused": money(np.where(unapplied_row, amt, 0)),
            "subsidiary": pick(sub_ids, p_ent_pay),
            "terms": pl.Series([None] * len(src), dtype=pl.Utf8),
            "memo": memo.gather(src),
            "createddate": ts(all_t),
            "_total_cents": amt,
        }
    ).with_columns(_visible_at=pl.col("createddate"))
    pym = take(pym, np.argsort(row_ids))
    m["netsuite", "transaction"] = pl.concat(
        [m["netsuite", "transaction"], pym], how="diagonal_relaxed"
    )
    m["stripe", "payment_intents"] = pl.DataFrame(
        {
            "id": pi_id,
            "object": const("payment_intent", len(src)),
            "customer": gather_or_null(sc_id, acc_cust[pay_acc[src]]),
            "amount": amt,
            "amount_received": amt,
            "currency": pick(LOWER, p_ent_pay),
            "status": const("succeeded", len(src)),
            "description": memo.gather(src),
            "latest_charge": pl.Series([None] * len(src), dtype=pl.Utf8),
            "livemode": np.zeros(len(src), bool),
            "metadata": pym_id.to_frame("netsuite_id").to_struct("metadata"),
            "created": ts(all_t),
            "_seq": row_ids - 5_000_000,
        }
    ).with_columns(_visible_at=pl.col("created"))
    m["stripe", "payment_intents"] = take(m["stripe", "payment_intents"], np.argsort(row_ids))
    # applications
    app = applied_ev.select("inv", "pay", "pt", "a").sort("pt", "pay", "inv")
    app_inv = app["inv"].to_numpy()
    app_pay = app["pay"].to_numpy()
    n_app = app.height
    m["netsuite", "nexttransactionlinelink"] = (
        pl.DataFrame(
            {
                "previousdoc": gather_or_null(ns_inv_ids, ns_inv_of[app_inv]),
                "previoustype": const("CustInvc", n_app),
                "nextdoc": pym_id.gather(app_pay),
                "nexttype": const("CustPymt", n_app),
                "linktype": const("Payment", n_app),
                "foreignamount": money(app["a"].to_numpy()),
                "linkdate": dt_(_day_of(app["pt"].to_numpy())),
                "lastmodifieddate": ts(app["pt"].to_numpy()),
            }
        )
        .select(pl.concat_str("nextdoc", pl.lit("-"), "previousdoc").alias("id"), pl.all())
        .with_columns(_visible_at=pl.col("lastmodifieddate"))
    )
    ipay_id = stripe_ids("inpay", np.arange(n_app), 4)
    m["stripe", "invoice_payments"] = pl.DataFrame(
        {
            "id": ipay_id,
            "object": const("invoice_payment", n_app),
            "invoice": gather_or_null(si_id, si_of[app_inv]),
            "amount_paid": app["a"].to_numpy(),
            "amount_requested": app["a"].to_numpy(),
            "currency": pick(LOWER, st_ccy[app_inv]),
            "is_default": np.ones(n_app, bool),
            "livemode": np.zeros(n_app, bool),
            "status": const("paid", n_app),
            "payment": pl.DataFrame(
                {"type": const("payment_intent", n_app), "payment_intent": pi_id.gather(app_pay)}
            ).to_struct("payment"),
            "status_transitions": pl.DataFrame(
                {
                    "canceled_at": const(None, n_app, UTC_TS),
                    "paid_at": ts(app["pt"].to_numpy()),
                }
            ).to_struct("status_transitions"),
            "created": ts(app["pt"].to_numpy()),
            "_seq": np.arange(n_app),
        }
    ).with_columns(_visible_at=pl.col("created"))
    pay_gt = pl.DataFrame(
        {
            "ns": pym_id,
            "pi": pi_id,
            "orig_ns": pym_id.gather(src),
            "c": amt,
            "cur": pick(CURRENCIES, p_ent_pay),
            "t": ts(all_t),
            "dup": is_dup_row,
            "un": np.concatenate([unapplied, np.zeros(len(dup_idx), bool)]),
        }
    )
    gts += [
        _gt(
            pay_gt.filter(pl.col("dup")),
            "duplicate_payment",
            _records(
                ("netsuite", "transaction", pl.col("ns")),
                ("stripe", "payment_intents", pl.col("pi")),
                ("netsuite", "transaction", pl.col("orig_ns")),
            ),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Second payment with the same payer, amount and remittance reference"),
        ),
        _gt(
            pay_gt.filter(pl.col("un")),
            "unapplied_cash",
            _records(
                ("netsuite", "transaction", pl.col("ns")),
                ("stripe", "payment_intents", pl.col("pi")),
            ),
            pl.col("c"),
            pl.col("cur"),
            pl.col("t"),
            pl.lit("Payment received but not applied to any invoice"),
        ),
    ]
    _ = never_pay  # never-paying invoices surface as invoice_overdue, derived from the data at `now`

    # ---------------- stale sources: outage windows
    rng = rng_for(seed, "outages")
    out_rows = []
    rate = rates["stale_source"]
    for v in VENDORS:
        n_past = round(rate)
        n_future = round(rate * (end - now0) / (30 * DAY))
        starts = np.concatenate(
            [
                now0 - rng.integers(1 * DAY, 29 * DAY, n_past),
                now0 + rng.integers(1 * DAY, max(end - now0, 2 * DAY), n_future),
            ]
        )
        durs = rng.integers(20, 121, len(starts)) * MINUTE
        out_rows += [(v, int(s), int(s + d)) for s, d in zip(starts, durs, strict=True)]
    out_rows.sort(key=lambda r: (r[1], r[0]))
    outages = pl.DataFrame(
        {
            "defect_id": [f"GT-stale_source-{i + 1:06d}" for i in range(len(out_rows))],
            "vendor": [r[0] for r in out_rows],
            "starts_at": ts(np.array([r[1] for r in out_rows], np.int64)),
            "ends_at": ts(np.array([r[2] for r in out_rows], np.int64)),
        }
    )
    w.outages = outages
    m.update(_netsuite_reference(start - 3 * 365 * DAY))

    gt = pl.concat(gts).sort("injected_at", "break_type", "records")
    gt = gt.with_columns(
        defect_id=pl.concat_str(
            pl.lit("GT-"),
            pl.col("break_type"),
            pl.lit("-"),
            (pl.int_range(pl.len()).over("break_type") + 1).cast(pl.Utf8).str.zfill(6),
        )
    ).select("defect_id", pl.exclude("defect_id"))
    w.ground_truth = gt
    return w


def _netsuite_reference(t0: int) -> dict[tuple[str, str], pl.DataFrame]:
    """Subsidiaries, currencies and terms: static since before the history starts."""
    le = LEGAL_ENTITIES
    stamp = ts(np.full(3, t0))
    return {
        ("netsuite", "subsidiary"): pl.DataFrame(
            {
                "id": le["netsuite_subsidiary_id"],
                "name": le["name"],
                "country": le["country"],
                "currency": le["netsuite_currency_id"],
                "lastmodifieddate": stamp,
            }
        ),
        ("netsuite", "currency"): pl.DataFrame(
            {
                "id": le["netsuite_currency_id"],
                "name": ["US Dollar", "British Pound", "Euro"],
                "symbol": le["currency"],
                "isbasecurrency": [True, False, False],
                "lastmodifieddate": stamp,
            }
        ),
        ("netsuite", "term"): pl.DataFrame(
            {
                "id": PAYMENT_TERMS["netsuite_term_id"],
                "name": PAYMENT_TERMS["name"],
                "daysuntilnetdue": PAYMENT_TERMS["days"],
                "lastmodifieddate": stamp,
            }
        ),
    }
