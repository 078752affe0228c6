"""An invented matters catalogue (事项目录) for a city's reference units, used by the synthetic generator.

The real catalogue is not public in machine-readable form; this one is made up from generic matter
names per department category, so that every synthetic case links to a catalogue matter and the
catalogue has the size the bulletin quotes (淄博: 1.5万余件). Every row is marked ``invented``.

Columns: matter_code, matter_name, unit_id, category, level (GB/T 39046 A.2 行使层级), type (A.1 事项类型),
invented.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

from haocha_analysis.core.reference import CityReference

# A.1 事项类型 → two-letter code used in the invented matter codes.
TYPE_CODES = {
    "行政许可": "XK",
    "行政确认": "QR",
    "行政给付": "JF",
    "公共服务": "GG",
    "其他行政权力": "QT",
    "行政征收": "ZS",
    "行政奖励": "JL",
    "行政裁决": "CJ",
}
# A.2 行使层级 by unit level.
LEVEL_NAMES = {"city_dept": "市级", "district_dept": "县级", "town": "镇级", "village": "村级"}

P, Q, G, F, OT, Z = "行政许可", "行政确认", "公共服务", "行政给付", "其他行政权力", "行政征收"

# Base matters per category keyword (matched against the unit's category or name). Presale-fund
# matters of 住建 come first: their cases come from the 住房资金预售监管系统 and the case generator
# favours a unit's first matters.
BASE_MATTERS: dict[str, list[tuple[str, str]]] = {
    "人社": [
        ("失业保险金申领", F),
        ("社会保障卡申领", G),
        ("职工参保登记", Q),
        ("养老保险待遇申领", F),
        ("就业创业证申领", G),
        ("技能人员职业资格证书查询", G),
        ("工伤认定申请", Q),
        ("人力资源服务许可", P),
        ("灵活就业人员参保登记", Q),
        ("个人权益记录查询", G),
        ("稳岗返还", F),
        ("劳动合同备案", OT),
    ],
    "医疗保障": [
        ("基本医疗保险参保登记", Q),
        ("医保关系转移接续", G),
        ("异地就医备案", G),
        ("门诊慢特病待遇认定", Q),
        ("生育保险待遇核准支付", F),
        ("医疗费用手工（零星）报销", F),
        ("参保信息变更", G),
        ("医保个人账户查询", G),
    ],
    "公积金": [
        ("住房公积金提取", F),
        ("住房公积金个人贷款", G),
        ("单位缴存登记", Q),
        ("个人账户设立", G),
        ("缴存基数调整", G),
        ("贷款提前还款", G),
        ("异地转移接续", G),
        ("缴存证明出具", G),
    ],
    "自然资源": [
        ("国有建设用地使用权及房屋所有权首次登记", Q),
        ("房屋所有权转移登记", Q),
        ("抵押权登记", Q),
        ("不动产登记资料查询", G),
        ("预告登记", Q),
        ("更正登记", Q),
        ("注销登记", Q),
        ("建设用地规划许可", P),
        ("乡村建设规划许可", P),
        ("宅基地使用权及房屋所有权登记", Q),
    ],
    "公安": [
        ("居民身份证换领", OT),
        ("户口迁移", OT),
        ("出生登记", OT),
        ("往来港澳通行证签发", P),
        ("普通护照签发", P),
        ("机动车驾驶证换证", P),
        ("机动车注册登记", Q),
        ("无犯罪记录证明", G),
        ("居住证申领", G),
        ("临时身份证明", G),
        ("机动车检验合格标志核发", P),
        ("剧毒化学品购买许可", P),
    ],
    "审批": [
        ("食品经营许可", P),
        ("企业设立登记", P),
        ("建筑工程施工许可", P),
        ("药品零售企业许可", P),
        ("道路货物运输经营许可", P),
        ("营业执照变更登记", P),
        ("公共场所卫生许可", P),
        ("民办学校设立", P),
        ("医疗机构执业登记", P),
        ("出版物零售单位设立", P),
        ("娱乐场所经营许可", P),
        ("取水许可", P),
        ("建设工程消防设计审查", P),
        ("排水许可", P),
    ],
    "发改": [
        ("企业投资项目备案", OT),
        ("企业投资项目核准", P),
        ("固定资产投资项目节能审查", P),
        ("价格认定", G),
    ],
    "教": [
        ("教师资格认定", P),
        ("学生资助申请", F),
        ("中小学入学登记", G),
        ("体育经营活动许可", P),
        ("学历证明补办", G),
    ],
    "科技": [("科技型中小企业评价", Q), ("技术合同认定登记", Q), ("高新技术企业认定推荐", OT)],
    "工信": [("新增电力用户审核", OT), ("墙体材料专项基金返还", F), ("中小企业认定", Q)],
    "民政": [
        ("婚姻登记", Q),
        ("最低生活保障审核", F),
        ("特困人员认定", Q),
        ("社会团体登记", P),
        ("殡葬补贴发放", F),
        ("高龄津贴申领", F),
        ("临时救助", F),
        ("收养登记", Q),
    ],
    "司法": [("法律援助申请", G), ("公证业务办理", G), ("人民调解", G), ("基层法律服务工作者执业核准", P)],
    "财政": [("会计代理记账许可", P), ("政府采购投诉处理", OT), ("财政票据领购", G)],
    "生态环境": [
        ("建设项目环境影响评价审批", P),
        ("排污许可", P),
        ("危险废物经营许可", P),
        ("辐射安全许可", P),
    ],
    "住建": [
        ("商品房预售资金监管账户设立", OT),
        ("商品房预售资金拨付", OT),
        ("预售资金监管协议备案", OT),
        ("商品房预售许可", P),
        ("建筑业企业资质", P),
        ("房屋租赁登记备案", OT),
        ("物业服务合同备案", OT),
        ("燃气经营许可", P),
        ("城市建筑垃圾处置核准", P),
        ("建设工程竣工验收备案", OT),
    ],
    "交通": [
        ("道路运输从业资格", P),
        ("出租汽车驾驶员资格", P),
        ("道路运输证配发", P),
        ("公路超限运输许可", P),
        ("涉路施工许可", P),
    ],
    "水利": [("河道管理范围内建设项目审批", P), ("水土保持方案审批", P), ("取水许可延续", P)],
    "农业农村": [
        ("农药经营许可", P),
        ("兽药经营许可", P),
        ("动物防疫条件合格证核发", P),
        ("渔业船舶登记", Q),
        ("农村土地承包经营权流转备案", OT),
        ("农机购置补贴", F),
    ],
    "商务": [
        ("对外贸易经营者备案", OT),
        ("成品油零售经营资格", P),
        ("单用途预付卡备案", OT),
        ("二手车交易市场备案", OT),
    ],
    "文化和旅游": [("营业性演出许可", P), ("旅行社设立许可", P), ("网吧经营许可", P), ("艺术品经营备案", OT)],
    "卫健": [
        ("医师执业注册", P),
        ("护士执业注册", P),
        ("出生医学证明", Q),
        ("放射诊疗许可", P),
        ("母婴保健技术服务许可", P),
        ("生育登记", G),
    ],
    "退役军人": [("优待证申领", G), ("伤残抚恤", F), ("退役士兵安置", G), ("烈士褒扬金发放", F)],
    "市场监管": [
        ("个体工商户登记", P),
        ("企业名称登记", P),
        ("特种设备使用登记", Q),
        ("计量器具型式批准", P),
        ("食品生产许可", P),
        ("工业产品生产许可", P),
        ("股权出质登记", Q),
    ],
    "统计": [("统计调查项目审批", P), ("统计登记", Q)],
    "金融": [("小额贷款公司设立审核", OT), ("融资担保公司设立审核", P), ("典当行设立审核", OT)],
    "工会": [("职工困难帮扶", F), ("工会法人资格登记", Q), ("职工医疗互助", G)],
    "残": [("残疾人证办理", Q), ("残疾人两项补贴", F), ("辅助器具适配", G), ("残疾人就业保障金减免", Z)],
    "消防": [("公众聚集场所投入使用营业前消防安全检查", P), ("消防安全培训", G), ("火灾事故认定", Q)],
    "气象": [("雷电防护装置检测资质", P), ("施放气球活动许可", P), ("气象资料查询", G)],
    "公共服务": [
        ("用水报装", G),
        ("用电报装", G),
        ("燃气开户", G),
        ("供暖开户", G),
        ("宽带装机", G),
        ("过户更名", G),
        ("缴费查询", G),
        ("故障报修", G),
        ("销户", G),
        ("增容", G),
    ],
    "应急": [("危险化学品经营许可", P), ("烟花爆竹经营许可", P), ("安全评价机构资质", P)],
    "贸促": [("原产地证书签发", Q), ("商事证明书出具", Q), ("ATA单证册签发", Q)],
    "税务": [
        ("发票领用", OT),
        ("增值税申报", Z),
        ("个人所得税汇算", Z),
        ("税务登记信息确认", Q),
        ("完税证明开具", G),
        ("车辆购置税申报", Z),
        ("社保费缴纳", Z),
        ("房产交易税费申报", Z),
    ],
    "体育": [("高危险性体育项目经营许可", P), ("社会体育指导员认定", Q)],
    "国安": [("涉及国家安全事项的建设项目许可", P)],
    "人防": [("人防工程建设审批", P), ("防空地下室易地建设审批", P)],
    "公证": [("学历公证", G), ("亲属关系公证", G), ("委托公证", G), ("继承公证", G), ("声明公证", G)],
    "综合受理": [
        ("一窗受理·企业开办", P),
        ("一窗受理·不动产登记", Q),
        ("一窗受理·社保医保", G),
        ("一窗受理·证照联办", P),
        ("一窗受理·综合咨询", G),
        ("一窗受理·帮办代办", G),
    ],
    "town": [
        ("城乡居民养老保险参保登记", Q),
        ("最低生活保障申请受理", F),
        ("残疾人证申请受理", Q),
        ("居住证明出具", G),
        ("老年人优待证办理", G),
        ("农村宅基地申请初审", OT),
        ("城乡居民医保参保登记", Q),
        ("生育服务登记", G),
        ("临时救助申请受理", F),
        ("退役军人信息采集", G),
        ("高龄津贴申请受理", F),
        ("就业登记", G),
    ],
    "village": [
        ("代办城乡居民医保缴费", G),
        ("代办社会保障卡申领", G),
        ("村（居）民证明出具", G),
        ("养老资格认证", G),
        ("代办高龄津贴申请", G),
        ("代办残疾人两项补贴", G),
    ],
}
VARIANTS = [
    "",
    "（变更）",
    "（注销）",
    "（延续）",
    "（补办）",
    "（查询）",
    "（新办）",
    "（迁入）",
    "（迁出）",
    "（更正）",
]

# A category name → the BASE_MATTERS key that describes it (first keyword found wins).
_KEYS = sorted((k for k in BASE_MATTERS if k not in ("town", "village")), key=len, reverse=True)


def matters_key(unit: pd.Series) -> str:
    """The BASE_MATTERS key for a unit: its level for towns/villages, else the first keyword found."""
    if unit["level"] in ("town", "village"):
        return unit["level"]
    if bool(unit.get("public_service")):
        return "公共服务"
    text = f"{unit.get('category') or ''}{unit['unit_name']}"
    if not unit.get("category"):
        return "综合受理"
    for key in _KEYS:
        if key in text:
            return key
    return "审批"


def source_system(unit_key: str, matter_name: str) -> str:
    """The business system (来源业务系统) that produces a matter's cases."""
    if unit_key == "自然资源":
        return "不动产系统"
    if unit_key == "公积金":
        return "住房公积金管理系统"
    if unit_key == "住建" and "预售" in matter_name:
        return "住房资金预售监管系统"
    return "政务服务平台"


def _unit_code(unit_id: str) -> str:
    """zb-d01-k30-1 → D01K301: the unit part of an invented matter code."""
    tail = unit_id.split("-", 1)[1] if "-" in unit_id else unit_id
    return re.sub(r"[^0-9A-Za-z]", "", tail).upper()


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def build_catalogue(ref: CityReference, target_rows: int | None = 15_286) -> pd.DataFrame:
    """Invent a matters catalogue for every unit that handles cases (all but the district rows).

    Deterministic (depends only on the unit list). ``target_rows`` trims or pads the largest units so
    the catalogue has exactly that many rows (None keeps the natural count).
    """
    units = ref.units[ref.units["level"] != "district"].sort_values(
        ["level", "order", "unit_id"], kind="stable"
    )
    per_level = {"city_dept": 55, "district_dept": 24, "town": 24, "village": 7}
    plans = []
    for unit in units.to_dict("records"):
        key = matters_key(unit)
        bases = BASE_MATTERS[key]
        h = _stable_int(unit["unit_id"])
        want = per_level[unit["level"]]
        want = max(len(bases) // 2, int(want * (0.6 + (h % 1000) / 1000 * 0.9)))
        plans.append([unit, key, bases, min(want, len(bases) * len(VARIANTS))])
    if target_rows is not None:
        # Pad or trim the largest units, one matter at a time, within what the name variants allow.
        caps = [len(p[2]) * len(VARIANTS) for p in plans]
        target = min(max(target_rows, len(plans)), sum(caps))
        order = sorted(range(len(plans)), key=lambda j: -plans[j][3])
        total = sum(p[3] for p in plans)
        while total != target:
            step = 1 if total < target else -1
            for j in order:
                if total == target:
                    break
                if (step > 0 and plans[j][3] < caps[j]) or (step < 0 and plans[j][3] > 1):
                    plans[j][3] += step
                    total += step
    rows = []
    for unit, _key, bases, n in plans:
        region = unit.get("region_code") or "370300"
        code = _unit_code(unit["unit_id"])
        for i in range(n):
            name, mtype = bases[i % len(bases)]
            variant = VARIANTS[i // len(bases)]
            rows.append(
                {
                    "matter_code": f"{region}{code}{TYPE_CODES[mtype]}{i + 1:04d}",
                    "matter_name": f"{name}{variant}",
                    "unit_id": unit["unit_id"],
                    "category": unit.get("category") or "",
                    "level": LEVEL_NAMES[unit["level"]],
                    "type": mtype,
                    "invented": "true",
                }
            )
    return pd.DataFrame(rows)


def catalogue_arrays(ref: CityReference, unit_ids: list[str]) -> dict[str, np.ndarray]:
    """The catalogue as arrays grouped by unit, for fast sampling.

    Returns codes, names and source systems (one entry per matter, grouped by unit in ``unit_ids``
    order) and, per unit, the offset and count of its matters.
    """
    if ref.matters is not None and len(ref.matters):
        matters = ref.matters
    else:  # a city without a catalogue: invent one of natural size
        matters = build_catalogue(ref, target_rows=None)
    pos = {u: i for i, u in enumerate(unit_ids)}
    matters = matters[matters["unit_id"].isin(pos)].copy()
    matters["_u"] = matters["unit_id"].map(pos)
    matters["_i"] = np.arange(len(matters))
    matters = matters.sort_values(["_u", "_i"], kind="stable")
    units = ref.units.set_index("unit_id")
    keys = {u: matters_key(units.loc[u].to_dict() | {"unit_id": u}) for u in unit_ids if u in units.index}
    systems = [
        source_system(keys[u], n) for u, n in zip(matters["unit_id"], matters["matter_name"], strict=True)
    ]
    counts = np.bincount(matters["_u"].to_numpy(), minlength=len(unit_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return {
        "code": matters["matter_code"].to_numpy(dtype=object),
        "name": matters["matter_name"].to_numpy(dtype=object),
        "system": np.asarray(systems, dtype=object),
        "offset": offsets.astype(np.int64),
        "count": counts.astype(np.int64),
    }
