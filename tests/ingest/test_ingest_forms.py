"""Issue 2 item 10: the same records in each of the four profile forms give identical canonical tables.

One canonical frame is written as: canonical Parquet (canonical.yml), GB/T 39046 Chinese-header CSV
in GB18030 (gbt39046.yml), 浙江 interface XLSX with a title row (zhejiang.yml) and an Epoint flat
UTF-8-with-BOM CSV (epoint_jining.yml). Each ingest must give exactly the expected canonical tables,
and no identity or phone number of the input may survive into any output file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from haocha_analysis.core.reference import CityReference
from haocha_analysis.core.schemas import coerce
from haocha_analysis.ingest.build import ingest_files
from haocha_analysis.ingest.privacy import hash_value
from haocha_analysis.ingest.storage import load_tables

SALT = "test-salt"  # conftest sets HAOCHA_SALT to this
PERSON_ID = "370303199001011234"
PERSON_ID_X = "37030319850202456X"
MOBILE = "13912345678"
COMMENT_ID = "110101198001011237"
COMMENT_MOBILE = "15866668888"
RAW_PII = [PERSON_ID, PERSON_ID_X, MOBILE, COMMENT_ID, COMMENT_MOBILE]

STANDARD_PF = {"pc": 1, "mobile": 2, "qr_code": 3, "hall_tablet": 4, "hall_terminal": 5, "phone": 6, "sms": 7}
ZHEJIANG_PF = {
    "pc": 1,
    "mobile": 2,
    "qr_code": 3,
    "hall_tablet": 4,
    "hall_terminal": 5,
    "sms": 6,
    "system_default": 7,
}
CHANNEL_TEXT = {"paper": "评议卡", "system_default": "系统默认评价", "phone": "电话"}


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def _units(ref: CityReference) -> dict[str, pd.Series]:
    dept = ref.level("city_dept").iloc[0]
    district_dept = ref.level("district_dept")
    district_dept = district_dept[district_dept["category"].fillna("") != ""].iloc[0]
    return {
        "dept": dept,
        "dd": district_dept,
        "town": ref.level("town").iloc[0],
        "village": ref.level("village").iloc[0],
    }


def canonical_records(ref: CityReference) -> dict[str, pd.DataFrame]:
    """The records every form carries: 5 cases (one outside Q2), 8 evaluations, 2 rectifications."""
    u = _units(ref)
    cases = pd.DataFrame(
        {
            "case_id": ["C1", "C2", "C3", "C4", "C5", "C6"],
            "unit": ["dept", "dd", "town", "village", "dd", "dept"],
            "matter_code": ["M001", "M002", "M003", "M004", "M002", "M001"],
            "matter_name": [
                "社保卡申领",
                "居民身份证换领",
                "低保申请",
                "老年证办理",
                "居民身份证换领",
                "社保卡申领",
            ],
            "accepted_at": [
                "2023-04-01 09:00",
                "2023-05-08 10:30",
                "2023-06-19 08:30",
                "2023-06-30 09:00",
                "2023-04-14 14:00",
                "2023-07-03 09:00",
            ],
            "finished_at": [
                "2023-04-03 10:00",
                "2023-05-10 15:30",
                "2023-06-20 11:15",
                "2023-06-30 17:00",
                "2023-04-15 08:45",
                "2023-07-05 10:00",
            ],
            "source_system": [
                "政务服务平台",
                "政务服务平台",
                "不动产登记",
                "政务服务平台",
                "住房公积金",
                "政务服务平台",
            ],
            "promise_type": ["即办件", "承诺件", "即办件", "承诺件", "即办件", "即办件"],
        }
    )
    cases["unit_id"] = [u[k]["unit_id"] for k in cases["unit"]]
    cases["unit_name"] = [u[k]["unit_name"] for k in cases["unit"]]
    cases["region_code"] = [str(u[k]["region_code"]) for k in cases["unit"]]
    for col in ("accepted_at", "finished_at"):
        cases[col] = pd.to_datetime(cases[col])
    evaluations = pd.DataFrame(
        {
            "eval_id": ["E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8"],
            "case_id": ["C1", "C2", "C2", "C3", "C5", None, None, "C1"],
            "unit": ["dept", "dd", "dd", "town", "dd", "town", "dd", "dept"],
            "channel": ["pc", "phone", "sms", "system_default", "hall_tablet", "qr_code", "mobile", "paper"],
            "satisfaction": [5, 1, 2, 5, 4, 3, 4, 4],
            "evaluated_at": [
                "2023-04-03 10:10",
                "2023-05-10 16:00",
                "2023-05-12 09:00",
                "2023-06-21 00:00",
                "2023-04-15 09:00",
                "2023-06-02 14:20",
                "2023-05-20 11:11",
                "2023-04-05 08:30",
            ],
            "attempt": [1, 1, 2, 1, 1, 1, 1, 2],
            "raw_key": [PERSON_ID, MOBILE, MOBILE, None, PERSON_ID_X, None, MOBILE, PERSON_ID],
            "operator": ["王某", "李某", None, None, "赵某", None, None, "王某"],
            "comment": [
                "很好",
                f"态度差，回电{COMMENT_MOBILE}",
                None,
                None,
                None,
                f"证件{COMMENT_ID}的事办好了",
                None,
                "满意",
            ],
        }
    )
    evaluations["unit_id"] = [u[k]["unit_id"] for k in evaluations["unit"]]
    evaluations["unit_name"] = [u[k]["unit_name"] for k in evaluations["unit"]]
    evaluations["evaluated_at"] = pd.to_datetime(evaluations["evaluated_at"])
    evaluations["reported_at"] = evaluations["evaluated_at"] + pd.Timedelta(minutes=2)
    evaluations["active"] = evaluations["channel"] != "system_default"
    rectifications = pd.DataFrame(
        {
            "eval_id": ["E2", "E3"],
            "verdict": ["valid", "invalid"],
            "invalid_reason": [None, "误评"],
            "revisited_at": pd.to_datetime(["2023-05-15 09:00", "2023-05-16 09:00"]),
            "deadline": pd.to_datetime(["2023-05-31 00:00", None]),
            "rectified_at": pd.to_datetime(["2023-05-20 10:00", None]),
            "follow_up": ["满意", None],
        }
    )
    return {"cases": cases, "evaluations": evaluations, "rectifications": rectifications}


def expected_tables(records: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """What ingest must produce for 2023Q2: C6 (July) excluded, keys hashed, comments masked."""
    cases = records["cases"]
    cases = cases[cases["finished_at"] < "2023-07-01"]
    cases = cases[
        [
            "case_id",
            "unit_id",
            "matter_code",
            "matter_name",
            "region_code",
            "accepted_at",
            "finished_at",
            "source_system",
            "promise_type",
        ]
    ].copy()
    ev = records["evaluations"].copy()
    ev["evaluator_key"] = [hash_value(k, SALT) if isinstance(k, str) else None for k in ev["raw_key"]]
    ev["comment"] = (
        ev["comment"].str.replace(COMMENT_MOBILE, "[手机号已脱敏]").str.replace(COMMENT_ID, "[证件号已脱敏]")
    )
    ev = ev[
        [
            "eval_id",
            "case_id",
            "unit_id",
            "channel",
            "satisfaction",
            "evaluated_at",
            "reported_at",
            "attempt",
            "active",
            "evaluator_key",
            "operator",
            "comment",
        ]
    ]
    out = {
        "cases": coerce(cases, "cases"),
        "evaluations": coerce(ev, "evaluations"),
        "rectifications": coerce(records["rectifications"], "rectifications"),
    }
    return out


# --- the four forms -----------------------------------------------------------------------------


def write_canonical(records: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    ev = records["evaluations"].copy()
    ev["evaluator_key"] = [hash_value(k, SALT) if isinstance(k, str) else None for k in ev["raw_key"]]
    frames = {
        "cases": records["cases"].drop(columns=["unit", "unit_name"]),
        "evaluations": ev.drop(columns=["unit", "unit_name", "raw_key"]),
        "rectifications": records["rectifications"],
    }
    paths = []
    for name, frame in frames.items():
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        paths.append(path)
    return paths


def _fmt(series: pd.Series, fmt: str) -> pd.Series:
    return series.dt.strftime(fmt).where(series.notna(), None)


def _pf(channel: pd.Series, table: dict[str, int]) -> list[str]:
    return [str(table[c]) if c in table else CHANNEL_TEXT[c] for c in channel]


def _rect_chinese(records: dict[str, pd.DataFrame], fmt: str) -> pd.DataFrame:
    r = records["rectifications"]
    return pd.DataFrame(
        {
            "评价编号": r["eval_id"],
            "核实结论": r["verdict"].map({"valid": "有效差评", "invalid": "无效差评"}),
            "无效原因": r["invalid_reason"],
            "回访时间": _fmt(r["revisited_at"], fmt),
            "整改期限": _fmt(r["deadline"], fmt),
            "整改完成时间": _fmt(r["rectified_at"], fmt),
            "整改后回访满意度": r["follow_up"],
        }
    )


def _split_key(raw: pd.Series) -> tuple[list, list]:
    ids = [k if isinstance(k, str) and len(k) == 18 else None for k in raw]
    mobiles = [k if isinstance(k, str) and len(k) == 11 else None for k in raw]
    return ids, mobiles


def write_gbt39046(records: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    fmt = "%Y%m%dT%H%M%S"  # GB/T 39046 date-time
    c, e = records["cases"], records["evaluations"]
    cases = pd.DataFrame(
        {
            "办件编号": c["case_id"],
            "受理部门": c["unit_name"],
            "事项编码": c["matter_code"],
            "事项名称": c["matter_name"],
            "行政区划代码": c["region_code"],
            "受理时间": _fmt(c["accepted_at"], fmt),
            "办结时间": _fmt(c["finished_at"], fmt),
            "数据来源": c["source_system"],
            "办件类型": c["promise_type"],
        }
    )
    ids, mobiles = _split_key(e["raw_key"])
    evaluations = pd.DataFrame(
        {
            "评价编号": e["eval_id"],
            "办件编号": e["case_id"],
            "受理部门": e["unit_name"],
            "评价渠道": _pf(e["channel"], STANDARD_PF),
            "满意度代码": 6 - e["satisfaction"],  # GB/T 39046 附录A.8: 1 = 非常满意
            "评价时间": _fmt(e["evaluated_at"], fmt),
            "评价上报时间": _fmt(e["reported_at"], fmt),
            "评价次数": e["attempt"],
            "证件号码": ids,
            "手机号码": mobiles,
            "文字评价": e["comment"],
            "经办人": e["operator"],
        }
    )
    paths = [folder / "办件.csv", folder / "评价.csv", folder / "整改.csv"]
    for frame, path in zip([cases, evaluations, _rect_chinese(records, fmt)], paths, strict=True):
        frame.to_csv(path, index=False, encoding="gb18030")
    return paths


def _write_xlsx(frame: pd.DataFrame, path: Path, title: str) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append([title])  # a title row above the header
    sheet.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        sheet.append([None if (not isinstance(v, str) and pd.isna(v)) else v for v in row])
    workbook.save(path)


def write_zhejiang(records: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    c, e = records["cases"], records["evaluations"]
    serial = (c["accepted_at"] - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)  # Excel serial dates
    cases = pd.DataFrame(
        {
            "projectNo": c["case_id"],
            "proDepart": c["unit_name"],
            "taskCode": c["matter_code"],
            "taskName": c["matter_name"],
            "areaCode": c["region_code"].astype(int),
            "acceptDate": serial.astype(float),
            "gmtService": _fmt(c["finished_at"], "%Y/%m/%d %H:%M"),
            "dataSource": c["source_system"],
            "promiseType": c["promise_type"].map({"承诺件": 1, "即办件": 2}),  # 浙江: 1 = 承诺件
        }
    )
    ids, mobiles = _split_key(e["raw_key"])
    evaluations = pd.DataFrame(
        {
            "rowguid": e["eval_id"],
            "projectNo": e["case_id"],
            "proDepart": e["unit_name"],
            "pf": [int(p) if p.isdigit() else p for p in _pf(e["channel"], ZHEJIANG_PF)],
            "satisfaction": e["satisfaction"],
            "assessTime": [t.to_pydatetime() for t in e["evaluated_at"]],  # real date cells
            "evalReportTime": [t.to_pydatetime() for t in e["reported_at"]],
            "assessNumber": e["attempt"],
            "certKey": ids,
            "mobile": mobiles,
            "writingEvaluation": e["comment"],
            "proManager": e["operator"],
        }
    )
    paths = [folder / "cases.xlsx", folder / "evaluations.xlsx", folder / "rectifications.xlsx"]
    _write_xlsx(cases, paths[0], "浙江省政务服务好差评 办件数据导出")
    _write_xlsx(evaluations, paths[1], "浙江省政务服务好差评 评价数据导出")
    _write_xlsx(_rect_chinese(records, "%Y/%m/%d %H:%M"), paths[2], "差评核实整改")
    return paths


def write_epoint(records: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    """A flat export: one row per evaluation with its case's columns, plus cases with no evaluation."""
    fmt = "%Y-%m-%d %H:%M:%S"
    c, e = records["cases"], records["evaluations"]
    case_cols = pd.DataFrame(
        {
            "projectno": c["case_id"],
            "prodepart_case": c["unit_name"],
            "taskcode": c["matter_code"],
            "taskname": c["matter_name"],
            "areacode": c["region_code"],
            "acceptdate": _fmt(c["accepted_at"], fmt),
            "banjiedate": _fmt(c["finished_at"], fmt),
            "datasource": c["source_system"],
            "promisetype": c["promise_type"].map({"即办件": "1", "承诺件": "2"}),  # 济宁: 1 = 即办件
        }
    )
    ids, mobiles = _split_key(e["raw_key"])
    eval_cols = pd.DataFrame(
        {
            "rowguid": e["eval_id"],
            "projectno": e["case_id"],
            "prodepart_eval": e["unit_name"],
            "pf": _pf(e["channel"], STANDARD_PF),
            "satisfaction": e["satisfaction"].astype(str),
            "assesstime": _fmt(e["evaluated_at"], fmt),
            "上报时间": _fmt(e["reported_at"], fmt),
            "assessnumber": e["attempt"].astype(str),
            "isprotion": np.where(e["channel"] == "system_default", "1", "0"),
            "certkeygov": ids,
            "mobile": mobiles,
            "writingevaluation": e["comment"],
            "operateusername": e["operator"],
        }
    )
    flat = eval_cols.merge(case_cols, on="projectno", how="outer", sort=True)
    flat["prodepart"] = flat["prodepart_case"].fillna(flat["prodepart_eval"])
    flat = flat.drop(columns=["prodepart_case", "prodepart_eval"])
    paths = [folder / "jining_export.csv", folder / "jining_rectifications.csv"]
    flat.to_csv(paths[0], index=False, encoding="utf-8-sig")
    _rect_chinese(records, fmt).to_csv(paths[1], index=False, encoding="utf-8-sig")
    return paths


FORMS = {
    "canonical": write_canonical,
    "gbt39046": write_gbt39046,
    "zhejiang": write_zhejiang,
    "epoint_jining": write_epoint,
}


def normalized(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("str")
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def pii_in_outputs(out_dir: Path) -> list[str]:
    """Every identity/phone-shaped string or raw input value found in any output file."""
    found = []
    pattern = re.compile(r"(?<!\d)(\d{17}[\dXx]|1[3-9]\d{9})(?!\d)")
    for path in sorted(out_dir.rglob("*")):
        if not path.is_file():
            continue
        texts = [path.read_bytes().decode("latin-1")]
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            texts.append(str(table.schema.metadata))
            texts += [" ".join(map(str, table.column(i).to_pylist())) for i in range(table.num_columns)]
        else:
            texts.append(path.read_text(encoding="utf-8"))
        for text in texts:
            found += [f"{path.name}: {m}" for m in pattern.findall(text)]
            found += [f"{path.name}: {raw}" for raw in RAW_PII if raw in text]
    return found


@pytest.mark.parametrize("city", ["qinghe", "zibo"])
def test_four_forms_give_identical_canonical_tables(city, request, tmp_path, monkeypatch):
    ref: CityReference = request.getfixturevalue(city)
    monkeypatch.setenv("HAOCHA_SALT", SALT)
    records = canonical_records(ref)
    expected = expected_tables(records)
    results = {}
    for form, writer in FORMS.items():
        folder = tmp_path / form
        folder.mkdir()
        files = writer(records, folder)
        out = tmp_path / f"out-{form}"
        log = ingest_files(form, files, ref, "2023Q2", out)
        tables = load_tables(out, None)
        results[form] = tables
        for table, key in (("cases", "case_id"), ("evaluations", "eval_id"), ("rectifications", "eval_id")):
            pd.testing.assert_frame_equal(
                normalized(tables[table], key),
                normalized(expected[table], key),
                check_dtype=False,
                obj=f"{form} {table}",
            )
        # accounting: C6 (finished in July) is excluded and counted; nothing else is lost
        assert log["totals"]["cases"]["kept"] == 5 and log["totals"]["cases"]["excluded_by_period"] == 1
        assert log["totals"]["evaluations"]["kept"] == 8
        assert log["totals"]["rectifications"]["kept"] == 2
        for entry in log["files"]:
            for t in entry["tables"].values():
                assert t["records"] == (
                    t["kept"]
                    + t["duplicates_dropped"]["count"]
                    + t["rejected"]["count"]
                    + t["excluded_by_period"]["count"]
                )
                assert entry["rows_read"] == t["records"] + t["rows_without_record"]
        # no identity number or mobile of the input survives into any output file
        assert pii_in_outputs(out) == []
        assert json.loads((out / "ingest_log.json").read_text(encoding="utf-8"))["period"] == "2023Q2"
    # the forms agree with each other too (dtypes included)
    for form in FORMS:
        for table, key in (("cases", "case_id"), ("evaluations", "eval_id"), ("rectifications", "eval_id")):
            pd.testing.assert_frame_equal(
                normalized(results[form][table], key),
                normalized(results["canonical"][table], key),
                obj=f"{form} vs canonical {table}",
            )


def test_forms_detect_what_they_should(qinghe, tmp_path):
    """Encodings, header rows and the flat split are detected, and the log says so."""
    records = canonical_records(qinghe)
    logs = {}
    for form, writer in FORMS.items():
        folder = tmp_path / form
        folder.mkdir()
        logs[form] = ingest_files(form, writer(records, folder), qinghe, "2023Q2", tmp_path / f"out-{form}")
    gbt = logs["gbt39046"]["files"]
    assert [f["encoding"] for f in gbt] == ["gb18030"] * 3
    assert [f["tables"] and list(f["tables"]) for f in gbt] == [
        ["cases"],
        ["evaluations"],
        ["rectifications"],
    ]
    zj = logs["zhejiang"]["files"]
    assert [f["header_row"] for f in zj] == [2, 2, 2]  # below the title row
    assert [f["file_type"] for f in zj] == ["xlsx"] * 3
    flat = logs["epoint_jining"]["files"][0]
    assert flat["encoding"] == "utf-8-sig"
    assert set(flat["tables"]) == {"cases", "evaluations"}
    # 10 rows: 8 evaluations (+1 case with none, +1 July case with none); C1 and C2 have two evaluations
    assert flat["rows_read"] == 10
    assert flat["tables"]["evaluations"]["records"] == 8
    assert flat["tables"]["evaluations"]["rows_without_record"] == 2
    assert flat["tables"]["cases"]["records"] == 8  # rows with case columns (E6, E7 are unlinked)
    assert flat["tables"]["cases"]["duplicates_dropped"]["count"] == 2
    assert flat["tables"]["cases"]["excluded_by_period"]["count"] == 1
    assert flat["tables"]["cases"]["kept"] == 5
