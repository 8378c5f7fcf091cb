"""What every rule, chain and KPI reads: the canonical frames split by system role and linked once.

Column prefixes name the record kind (``o_`` opportunity, ``p_`` project, ``k_`` PSA invoice,
``e_`` ERP invoice, ``b_`` billing invoice), so joined frames never rename anything silently.
The links are computed (collected) once per run and shared; their duplicate keys are gathered in
``duplicates`` and become ``duplicate_key`` data-quality breaks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

import polars as pl

from reconciler._canonical import Canonical
from reconciler._config import ReconcileConfig
from reconciler._links import DUPLICATES_SCHEMA, Cardinality, LinkResult, link

UTC_TS = pl.Datetime("us", "UTC")


def day_start(column: str | pl.Expr) -> pl.Expr:
    """A date as the UTC instant its day begins."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


_T = TypeVar("_T")


class computed(cached_property[_T], Generic[_T]):
    """A cached property of the run's context that counts its computations in ``computations``."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> computed[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> _T: ...
    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> Any:
        if instance is not None and self.attrname not in instance.__dict__:
            instance.computations[self.attrname] += 1  # type: ignore[attr-defined]
        return super().__get__(instance, owner)


def _now(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Compute a shared frame once: every rule that reads it then starts from memory."""
    return frame.collect().lazy()


class RuleContext:
    """One run's view of the data: as-of time, config, role frames and shared links.

    Role frames and links are computed once per run (cached properties holding collected
    frames), so the rules' plans share them instead of each recomputing the same joins;
    ``computations`` counts how often each was computed (a frame released and read again is
    computed twice).
    """

    def __init__(self, data: Canonical, as_of: datetime, config: ReconcileConfig) -> None:
        if as_of.tzinfo is None or as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware")
        self.data = data
        self.as_of = as_of
        self.config = config
        self.systems = config.systems
        self._shared: dict[str, pl.LazyFrame] = {}
        self._link_duplicates: dict[str, pl.LazyFrame] = {}
        self.computations: Counter[str] = Counter()

    def shared(self, name: str, build: Callable[[], pl.LazyFrame]) -> pl.LazyFrame:
        """A frame several rules need, computed on first use and kept for the run."""
        if name not in self._shared:
            self.computations[name] += 1
            self._shared[name] = _now(build())
        return self._shared[name]

    def release(self, *names: str) -> None:
        """Forget shared frames and links no later step reads, so their memory goes back.

        Always safe: a released frame that is read again is computed again.
        """
        for name in names:
            self.__dict__.pop(name, None)
            self._shared.pop(name, None)

    # ------------------------------------------------------------------ role frames

    @computed
    def opportunities(self) -> pl.LazyFrame:
        """Deals, with the legal entity of the deal or else of its CRM account."""
        entity = self.crm_accounts.select(
            pl.col("source_id").alias("account_ref"), pl.col("legal_entity").alias("_entity")
        ).unique("account_ref", keep="first")
        deals = self.data.opportunities.join(
            entity, on="account_ref", how="left", maintain_order="left"
        ).with_columns(pl.coalesce("legal_entity", "_entity").alias("legal_entity"))
        return _now(
            deals.select(
                pl.col("source_system").alias("o_system"),
                pl.col("source_id").alias("o_id"),
                pl.col("account_ref").alias("o_account"),
                pl.col("stage").alias("o_stage"),
                pl.col("is_closed").alias("o_closed"),
                pl.col("is_won").alias("o_won"),
                pl.col("won_at"),
                pl.col("amount_minor").alias("o_amount"),
                pl.col("currency").alias("o_currency"),
                pl.col("legal_entity").alias("o_entity"),
                pl.col("created_at_source").alias("o_created"),
            )
        )

    @computed
    def won(self) -> pl.LazyFrame:
        """Deals won by the as-of time."""
        return self.opportunities.filter(
            pl.col("o_won") & pl.col("won_at").is_not_null() & (pl.col("won_at") <= self.as_of)
        )

    @computed
    def projects(self) -> pl.LazyFrame:
        return _now(
            self.data.projects.filter(pl.col("source_system") == self.systems.psa).select(
                pl.col("source_system").alias("p_system"),
                pl.col("source_id").alias("p_id"),
                pl.col("opportunity_ref").alias("p_opp"),
                pl.col("account_ref").alias("p_account"),
                pl.col("status").alias("p_status"),
                pl.col("budget_minor").alias("p_budget"),
                pl.col("currency").alias("p_currency"),
                pl.col("created_at_source").alias("p_created"),
                pl.col("activated_at").alias("p_activated"),
            )
        )

    def _invoices(self, system: str) -> pl.LazyFrame:
        return self.data.invoices.filter(pl.col("source_system") == system)

    @computed
    def psa_invoices(self) -> pl.LazyFrame:
        return _now(
            self._invoices(self.systems.psa).select(
                pl.col("source_system").alias("k_system"),
                pl.col("source_id").alias("k_id"),
                pl.col("project_ref").alias("k_project"),
                pl.col("total_minor").alias("k_total"),
                pl.col("currency").alias("k_currency"),
                pl.col("status").alias("k_status"),
                pl.col("issued_on").alias("k_issued"),
            )
        )

    @computed
    def accounts(self) -> pl.LazyFrame:
        """Every system's customers, each legal entity under the CRM's code for it."""
        aliases = dict(self.config.legal_entity_aliases)
        if not aliases:
            return self.data.accounts
        return _now(
            self.data.accounts.with_columns(
                pl.col("legal_entity").replace(list(aliases), list(aliases.values()))
            )
        )

    @computed
    def erp_customers(self) -> pl.LazyFrame:
        return _now(self.accounts.filter(pl.col("source_system") == self.systems.erp))

    @computed
    def crm_accounts(self) -> pl.LazyFrame:
        return _now(self.accounts.filter(pl.col("source_system") == self.systems.crm))

    def normalised_status(self, column: str) -> pl.Expr:
        mapping = dict(self.config.invoice_status)
        return (
            pl.col(column)
            .str.to_lowercase()
            .str.strip_chars()
            .replace_strict(
                list(mapping), list(mapping.values()), default=pl.col(column).str.to_lowercase()
            )
        )

    @computed
    def erp_invoices(self) -> pl.LazyFrame:
        customers = self.erp_customers.select(
            pl.col("source_id").alias("e_customer"), pl.col("legal_entity").alias("e_entity")
        )
        return _now(
            self._invoices(self.systems.erp)
            .select(
                pl.col("source_system").alias("e_system"),
                pl.col("source_id").alias("e_id"),
                pl.col("number").alias("e_number"),
                pl.col("customer_ref").alias("e_customer"),
                pl.col("project_ref").alias("e_project"),
                pl.col("opportunity_ref").alias("e_opp"),
                pl.col("psa_invoice_ref").alias("e_psa"),
                pl.col("twin_ref").alias("e_twin"),
                pl.col("total_minor").alias("e_total"),
                pl.col("amount_remaining_minor").alias("e_remaining"),
                pl.col("currency").alias("e_currency"),
                pl.col("status").alias("e_status"),
                self.normalised_status("status").alias("e_state"),
                pl.col("issued_on").alias("e_issued"),
                pl.col("due_on").alias("e_due"),
                pl.col("source_modified_at").alias("e_modified"),
            )
            .join(customers, on="e_customer", how="left", maintain_order="left")
        )

    @computed
    def billing_invoices(self) -> pl.LazyFrame:
        billing = self._invoices(self.systems.billing).select(
            pl.col("source_system").alias("b_system"),
            pl.col("source_id").alias("b_id"),
            pl.col("customer_ref").alias("b_customer"),
            pl.col("twin_ref").alias("b_erp"),
            pl.col("psa_invoice_ref").alias("b_psa"),
            pl.col("total_minor").alias("b_total"),
            pl.col("currency").alias("b_currency"),
            self.normalised_status("status").alias("b_state"),
            pl.col("issued_on").alias("b_issued"),
            pl.col("source_modified_at").alias("b_modified"),
        )
        # The twin reference may be kept on either side: the billing invoice naming its ERP
        # invoice, or the ERP invoice naming its billing twin. Both count; the billing side wins.
        claims = (
            self.erp_invoices.filter(pl.col("e_twin").is_not_null())
            .group_by("e_twin")
            .agg(pl.col("e_id").min().alias("_claim"))
        )
        return _now(
            billing.join(
                claims, left_on="b_id", right_on="e_twin", how="left", maintain_order="left"
            )
            .with_columns(pl.coalesce("b_erp", "_claim").alias("b_key"))
            .drop("_claim", "b_erp")
        )

    # ------------------------------------------------------------------ links

    @computed
    def deal_projects(self) -> LinkResult:
        """Opportunity 1→N projects, on the project's opportunity reference."""
        return self._materialise(
            link(
                "opportunity_projects",
                self.opportunities,
                self.projects,
                left_on="o_id",
                right_on="p_opp",
                cardinality=Cardinality.ONE_TO_MANY,
                left_ident=("o_system", "o_id"),
                right_ident=("p_system", "p_id"),
            )
        )

    @computed
    def psa_erp(self) -> LinkResult:
        """PSA invoice 1↔1 ERP invoice, on the ERP invoice's PSA reference.

        Only the ERP columns its rules read come along (``_PSA_ERP_COLUMNS``): each link is a
        copy of the rows it joins, and at scale 40 the ERP invoices' other columns cost 0.3 GiB.
        """
        return self._materialise(
            link(
                "psa_erp_invoices",
                self.psa_invoices,
                self.erp_invoices.select(_PSA_ERP_COLUMNS),
                left_on="k_id",
                right_on="e_psa",
                cardinality=Cardinality.ONE_TO_ONE,
                left_ident=("k_system", "k_id"),
                right_ident=("e_system", "e_id"),
            )
        )

    @computed
    def erp_billing(self) -> LinkResult:
        """ERP invoice 1↔1 billing invoice, on the twin reference (either side's).

        Only the ERP columns its rules read come along (``_ERP_BILLING_COLUMNS``).
        """
        return self._materialise(
            link(
                "erp_billing_invoices",
                self.erp_invoices.select(_ERP_BILLING_COLUMNS),
                self.billing_invoices,
                left_on="e_id",
                right_on="b_key",
                cardinality=Cardinality.ONE_TO_ONE,
                left_ident=("e_system", "e_id"),
                right_ident=("b_system", "b_id"),
            )
        )

    @computed
    def project_of_deal(self) -> pl.LazyFrame:
        """Each PSA project with its deal's fields (null when the deal is unknown)."""
        return self.deal_projects.frame.filter(pl.col("p_id").is_not_null())

    @computed
    def invoice_deal(self) -> pl.LazyFrame:
        """ERP invoice id -> its deal (opportunity id), by the first reference that resolves.

        The invoice's own opportunity reference, else its project's, else its PSA invoice's
        project's. The PSA invoices are joined for the invoices still without a deal after
        the first two (usually few): joining all 1.5M at scale 40 cost 0.5 s.
        """
        project_opp = self.projects.select("p_id", "p_opp").unique(
            "p_id", keep="first", maintain_order=True
        )
        direct = (
            self.erp_invoices.select("e_id", "e_opp", "e_project", "e_psa")
            .join(project_opp, left_on="e_project", right_on="p_id", how="left")
            .with_columns(pl.coalesce("e_opp", "p_opp").alias("o_id"))
            .collect()
        )
        through_psa = (
            direct.lazy()
            .filter(pl.col("o_id").is_null())
            .select("e_id", "e_psa")
            .join(
                self.psa_invoices.select("k_id", "k_project"),
                left_on="e_psa",
                right_on="k_id",
                how="left",
            )
            .join(project_opp, left_on="k_project", right_on="p_id", how="left")
            .select("e_id", pl.col("p_opp").alias("o_id"))
            .unique("e_id", keep="first", maintain_order=True)
        )
        return _now(
            pl.concat(
                [
                    direct.lazy().filter(pl.col("o_id").is_not_null()).select("e_id", "o_id"),
                    through_psa,
                ],
                how="vertical",
            )
        )

    @computed
    def applications(self) -> pl.LazyFrame:
        """Payment applications of the ERP (the payments of record), by the as-of time."""
        return _now(
            self.data.payment_applications.filter(
                (pl.col("source_system") == self.systems.erp)
                & (pl.col("applied_at").is_null() | (pl.col("applied_at") <= self.as_of))
            )
        )

    @computed
    def erp_payments(self) -> pl.LazyFrame:
        applied = self.applications.group_by("payment_ref").agg(
            pl.col("amount_minor").sum().alias("_applied")
        )
        return _now(
            self.data.payments.filter(
                (pl.col("source_system") == self.systems.erp)
                & (pl.col("received_at").is_null() | (pl.col("received_at") <= self.as_of))
            )
            .join(applied, left_on="source_id", right_on="payment_ref", how="left")
            .with_columns(
                pl.coalesce(
                    "unapplied_minor", pl.col("amount_minor") - pl.col("_applied").fill_null(0)
                ).alias("unapplied")
            )
            .drop("_applied")
        )

    @computed
    def duplicates(self) -> pl.DataFrame:
        """Every duplicate key met by a link that must be unique.

        A link's duplicates are kept when the link is released, so reading them never computes
        a link again.
        """
        frames: list[pl.LazyFrame] = []
        for name in _LINK_ATTRIBUTES.values():
            if name not in self._link_duplicates:
                getattr(self, name)  # computing a link keeps its duplicates
            frames.append(self._link_duplicates[name])
        found = pl.concat(frames, how="vertical").collect()
        return found.cast(DUPLICATES_SCHEMA)  # type: ignore[arg-type]

    def _materialise(self, result: LinkResult) -> LinkResult:
        frame, duplicates = pl.collect_all([result.frame, result.duplicates])
        materialised = LinkResult(result.name, result.cardinality, frame.lazy(), duplicates.lazy())
        self._link_duplicates[_LINK_ATTRIBUTES[result.name]] = materialised.duplicates
        return materialised


_LINK_ATTRIBUTES = {
    "opportunity_projects": "deal_projects",
    "psa_erp_invoices": "psa_erp",
    "erp_billing_invoices": "erp_billing",
}

# The ERP invoice columns that the rules reading each invoice link use (a rule that needs
# another fails on a missing column, in every test of it: add the column here).
_PSA_ERP_COLUMNS = ("e_system", "e_id", "e_psa", "e_total", "e_currency", "e_entity", "e_issued")
_ERP_BILLING_COLUMNS = (
    "e_system", "e_id", "e_number", "e_total", "e_currency", "e_state", "e_entity", "e_issued",
    "e_modified",
)  # fmt: skip
