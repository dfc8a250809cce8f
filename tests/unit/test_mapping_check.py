"""``profile-sync mapping check`` against schema files: each error named, exit code 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from consumer.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
POS_SCHEMA = EXAMPLES / "pos_purchase.avsc"


def check(tmp_path: Path, mapping: str, *extra: str) -> list[str]:
    file = tmp_path / "mapping.yaml"
    file.write_text(textwrap.dedent(mapping), encoding="utf-8")
    return ["mapping", "check", "--mapping-file", str(file), *extra]


def pos(tmp_path: Path, attributes: str, schema: Path = POS_SCHEMA) -> list[str]:
    """A pos.purchases entry with ``attributes`` (YAML lines) under ``attributes:``."""
    body = textwrap.indent(textwrap.dedent(attributes).strip(), "    ")
    text = (
        "mappings:\n"
        "- topic: pos.purchases\n"
        f"  schema: {schema}\n"
        "  profile: {id: customer.number}\n"
        "  occurred_at: purchased_at\n"
        "  attributes:\n"
        f"{body}\n"
    )
    return check(tmp_path, text)


@pytest.mark.parametrize(
    "mapping",
    ["pos_purchase", "crm_customers", "loyalty_tier_changed"],
)
def test_the_example_mappings_pass_against_their_schemas(
    mapping: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["mapping", "check", "--mapping-file", str(EXAMPLES / f"{mapping}.mapping.yaml")]) == 0
    )
    assert "mapping OK" in capsys.readouterr().out


def test_the_builtin_mapping_passes_against_the_contract_schema() -> None:
    assert main(["mapping", "check"]) == 0


def test_unknown_path_wrong_type_and_duplicate_name_are_each_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = pos(
        tmp_path,
        """
        store: store.idd
        total: basket_total
        items: {path: items, transform: count}
        """,
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pos.purchases / store / store.idd: no field 'idd' in store" in err
    assert "pos.purchases / total / basket_total: a bytes (decimal): use transform decimal" in err
    assert "items /" not in err  # the good attribute is not blamed

    file = tmp_path / "dup.yaml"
    file.write_text(
        "mappings:\n- topic: t\n  profile: {id: id}\n  occurred_at: at\n"
        "  attributes: {tier: a, profile.tier: b}\n",
        encoding="utf-8",
    )
    assert main(["mapping", "check", "--mapping-file", str(file)]) == 2
    assert "t / profile.tier: duplicate Target name 'tier'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("attributes", "where", "why"),
    [
        ("x: {path: basket_total, transform: decimal, scale: 3}", "x / basket_total", "scale 2"),
        (
            "x: {path: purchased_at, transform: date, unit: micros}",
            "x / purchased_at",
            "unit: millis",
        ),
        ("x: {path: currency, transform: number}", "x / currency", "needs a number"),
        ("x: {path: items, transform: sum, item: sku}", "x / items", "array items"),
        ("x: {path: items, transform: join, item: nope}", "x / items", "no field 'nope'"),
        ("x: {path: store, transform: lower}", "x / store", "record Store cannot be rendered"),
        (
            "x: {path: items, transform: count}\ny: {path: store.id, transform: count}",
            "y / store.id",
            "array or a map",
        ),
        ("x: payment.brand.first", "x / payment.brand.first", "no field 'first'"),
    ],
)
def test_types_that_do_not_fit_the_transform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], attributes: str, where: str, why: str
) -> None:
    assert main(pos(tmp_path, attributes)) == 2
    err = capsys.readouterr().err
    line = next((ln for ln in err.splitlines() if f"pos.purchases / {where}:" in ln), "")
    assert why in line, err


def test_union_paths_into_a_record_branch_pass(tmp_path: Path) -> None:
    assert (
        main(pos(tmp_path, "brand: payment.brand\nlast4: {path: payment.last4, transform: upper}"))
        == 0
    )


def test_id_and_time_problems_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = check(
        tmp_path,
        f"""
        mappings:
          - topic: loyalty
            schema: {EXAMPLES / "loyalty_tier_changed.avsc"}
            profile: {{id: points_balance, id_type_from: id_kind, format: "{{:>12}}"}}
            occurred_at: {{path: changed_at, unit: millis}}
            attributes: {{tier: new_tier}}
        """,
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "loyalty / profile.id_type_from / id_kind: symbols CARD, VISITOR have no id type" in err
    assert (
        "loyalty / occurred_at / changed_at: the schema says timestamp-micros; set unit: micros"
        in err
    )


def test_schema_option_wins_and_a_missing_schema_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = """
        mappings:
          - topic: pos.purchases
            profile: {id: customer.number}
            occurred_at: purchased_at
            attributes: {store: store.id}
    """
    assert main(check(tmp_path, mapping)) == 2
    assert "pos.purchases / schema / -: no writer schema" in capsys.readouterr().err
    assert main(check(tmp_path, mapping, "--schema", f"pos.purchases={POS_SCHEMA}")) == 0
    evolved: dict[str, Any] = json.loads(POS_SCHEMA.read_text("utf-8"))
    evolved["fields"] = [f for f in evolved["fields"] if f["name"] != "customer"]
    evolved_file = tmp_path / "evolved.avsc"
    evolved_file.write_text(json.dumps(evolved), encoding="utf-8")
    assert main(check(tmp_path, mapping, "--schema", f"pos.purchases={evolved_file}")) == 2
    assert (
        "pos.purchases / profile.id / customer.number: no field 'customer'"
        in capsys.readouterr().err
    )


def test_a_syntax_error_in_the_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(check(tmp_path, "mappings: [{topic: t}]")) == 2
    assert "t / profile: required" in capsys.readouterr().err
