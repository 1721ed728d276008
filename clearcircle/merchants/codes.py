"""Real validation of the two numbers a merchant registers: the unified social credit code and the food
business licence number.

A typo in either would let an unlicensed seller through (or lock out a real one), so both are checked as far
as their published formats define them, and every refusal names the rule it broke (`CodeError.rule`), for the
422 of the API, the automatic rejection of a registry record and `clearcircle merchants check-code`.

Unified social credit code (统一社会信用代码), GB 32100-2015, 18 characters from the 31-character set
0-9 A-H J-N P-R T-U W-Y (no I, O, S, V, Z):

====  ===========================================  ============================================================
pos   part                                         checked
====  ===========================================  ============================================================
1     registration authority code (登记管理部门)    one of the assigned codes (REGISTRATION_AUTHORITIES)
2     organisation category code (机构类别)          defined for that authority (same table)
3-8   administrative division code (GB/T 2260)     six digits; the first two a GB/T 2260 province (or 100000,
                                                   the national level); prefectures and counties are not
                                                   checked: the list changes every year and old codes stay valid
9-17  organisation code (GB 11714)                 8 body characters, then its own check digit: weights
                                                   3,7,9,10,5,8,4,2 over the values (0-9, A=10 ... Z=35),
                                                   11 - (sum mod 11), 10 -> X, 11 -> 0
18    check character                              weights 3^(i-1) mod 31 over the character-set values,
                                                   31 - (sum mod 31), 31 -> 0, mapped back through the set
====  ===========================================  ============================================================

Food business licence number (食品经营许可证编号), 食品经营许可管理办法 (2015) art. 27, kept by the 2023
食品经营许可和备案管理办法: "JY" + 14 digits = 1 digit main business (主体业态: 1 food seller, 2 catering
service, 3 canteen of a unit), 2 digits province (GB/T 2260), 2 digits city, 2 digits county, 6 digits
sequence, 1 check digit. Checked: the prefix, the length, that all 14 are digits, the business digit and the
province. NOT checkable: the check digit (its algorithm is not published: any digit is accepted), whether the
city and county digits name a real place under that province, and whether the number was ever issued (only
the issuing market regulator's database can tell; staff verify that by hand before `verify`).
"""

from __future__ import annotations

from dataclasses import dataclass

CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_CHARS)}
CREDIT_CODE_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, 17, 20, 29, ...
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUE = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}

# GB 32100-2015 table 1 (with the authorities assigned since: 2-4, 6-8, A, N): authority -> its categories.
REGISTRATION_AUTHORITIES: dict[str, dict[str, str]] = {
    "1": {"1": "机关", "2": "事业单位", "3": "中央编办直接管理机构编制的群众团体", "9": "其他"},  # 机构编制
    "2": {"1": "外国常驻新闻机构", "9": "其他"},  # 外交
    "3": {"1": "律师执业机构", "2": "公证处", "3": "基层法律服务所", "4": "司法鉴定机构", "5": "仲裁委员会",
          "9": "其他"},  # 司法行政
    "4": {"1": "外国在华文化中心", "9": "其他"},  # 文化
    "5": {"1": "社会团体", "2": "民办非企业单位", "3": "基金会", "9": "其他"},  # 民政
    "6": {"1": "外国旅游部门常驻代表机构", "2": "港澳台地区旅游部门常驻内地代表机构", "9": "其他"},  # 旅游
    "7": {"1": "宗教活动场所", "2": "宗教院校", "9": "其他"},  # 宗教
    "8": {"1": "基层工会", "9": "其他"},  # 工会
    "9": {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"},  # 工商 (market regulation)
    "A": {"1": "军队事业单位", "9": "其他"},  # 中央军委改革和编制办公室
    "N": {"1": "组级集体经济组织", "2": "村级集体经济组织", "3": "乡镇级集体经济组织", "9": "其他"},  # 农业
    "Y": {"1": "其他"},  # 其他
}

# GB/T 2260 provinces, autonomous regions, municipalities and special administrative regions.
PROVINCES: dict[str, str] = {
    "11": "北京", "12": "天津", "13": "河北", "14": "山西", "15": "内蒙古",
    "21": "辽宁", "22": "吉林", "23": "黑龙江",
    "31": "上海", "32": "江苏", "33": "浙江", "34": "安徽", "35": "福建", "36": "江西", "37": "山东",
    "41": "河南", "42": "湖北", "43": "湖南", "44": "广东", "45": "广西", "46": "海南",
    "50": "重庆", "51": "四川", "52": "贵州", "53": "云南", "54": "西藏",
    "61": "陕西", "62": "甘肃", "63": "青海", "64": "宁夏", "65": "新疆",
    "71": "台湾", "81": "香港", "82": "澳门",
}
NATIONAL_DIVISION = "100000"  # organisations registered at the national level

# 主体业态 of a food business licence number (its third character).
LICENCE_BUSINESS: dict[str, str] = {"1": "食品销售经营者", "2": "餐饮服务经营者", "3": "单位食堂"}
LICENCE_PREFIX = "JY"


class CodeError(ValueError):
    """A code broke one rule of its format: `rule` is a stable id (length, charset, ...), the message says
    where and what was expected, in words a compliance officer can act on."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message
        super().__init__(f"{rule}: {message}")


@dataclass(frozen=True)
class CheckedCode:
    """What a valid code says about its holder (shown by `check-code`)."""

    kind: str  # credit_code / food_licence
    code: str
    parts: dict[str, str]
    note: str = ""


def org_code_check_digit(body: str) -> str:
    """GB 11714: the check digit of an 8-character organisation code body."""
    total = sum(_ORG_VALUE[c] * w for c, w in zip(body, ORG_CODE_WEIGHTS, strict=True))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def credit_code_check_char(first17: str) -> str:
    """GB 32100: the 18th character of a unified social credit code from its first 17."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def validate_credit_code(code: str) -> CheckedCode:
    """Check a unified social credit code rule by rule, in order; raises CodeError at the first broken rule.

    Nothing is normalised (no upper-casing, no trimming): the registry keeps what was filed, so what is
    checked is exactly what is stored.
    """
    if len(code) != 18:
        raise CodeError("length", f"a unified social credit code has 18 characters, got {len(code)}")
    for i, c in enumerate(code, 1):
        if c not in _VALUE:
            raise CodeError("charset", f"character {c!r} at position {i} is not in the GB 32100 character set "
                                       "(0-9 and A-H J-N P-R T-U W-Y: no I, O, S, V, Z, no lower case)")
    authority, category = code[0], code[1]
    categories = REGISTRATION_AUTHORITIES.get(authority)
    if categories is None:
        raise CodeError("registration_authority", f"position 1 {authority!r} is not an assigned registration "
                                                  f"authority code ({', '.join(REGISTRATION_AUTHORITIES)})")
    if category not in categories:
        raise CodeError("organisation_category", f"position 2 {category!r} is not an organisation category of "
                                                 f"registration authority {authority!r} ({', '.join(categories)})")
    division = code[2:8]
    if not division.isdigit():
        raise CodeError("division_code", f"positions 3-8 {division!r} must be a six-digit GB/T 2260 "
                                         "administrative division code")
    if division[:2] not in PROVINCES and division != NATIONAL_DIVISION:
        raise CodeError("division_code", f"positions 3-8 {division!r}: {division[:2]!r} is not a GB/T 2260 "
                                         "province code")
    org = code[8:17]
    expected = org_code_check_digit(org[:8])
    if org[8] != expected:
        raise CodeError("organisation_code_check_digit", f"the organisation code {org[:8]}-{org[8]} (positions "
                                                         f"9-17) has check digit {org[8]!r}, GB 11714 gives "
                                                         f"{expected!r}")
    check = credit_code_check_char(code[:17])
    if code[17] != check:
        raise CodeError("check_character", f"position 18 is {code[17]!r}, the GB 32100 check character of the "
                                           f"first 17 is {check!r}")
    return CheckedCode("credit_code", code, {
        "registration_authority": authority, "organisation_category": categories[category],
        "division_code": division, "province": PROVINCES.get(division[:2], "national"),
        "organisation_code": f"{org[:8]}-{org[8]}"})


def validate_food_licence(number: str) -> CheckedCode:
    """Check a food business licence number as far as its format is published (see the module docstring:
    the check digit and the city/county digits cannot be verified); raises CodeError at the first broken rule."""
    if not number.startswith(LICENCE_PREFIX):
        raise CodeError("prefix", f"a food business licence number starts with {LICENCE_PREFIX!r}, got "
                                  f"{number[:2]!r}")
    if len(number) != 16:
        raise CodeError("length", f"a food business licence number is JY + 14 digits (16 characters), got "
                                  f"{len(number)}")
    digits = number[2:]
    for i, c in enumerate(digits, 3):
        if not ("0" <= c <= "9"):
            raise CodeError("digits", f"character {c!r} at position {i}: after JY come 14 digits")
    if digits[0] not in LICENCE_BUSINESS:
        raise CodeError("business_category", f"position 3 {digits[0]!r} is not a main business category "
                                             "(1 food seller, 2 catering service, 3 canteen)")
    if digits[1:3] not in PROVINCES:
        raise CodeError("province", f"positions 4-5 {digits[1:3]!r} are not a GB/T 2260 province code")
    return CheckedCode("food_licence", number, {
        "business_category": LICENCE_BUSINESS[digits[0]], "province": PROVINCES[digits[1:3]],
        "city": digits[3:5], "county": digits[5:7], "sequence": digits[7:13], "check_digit": digits[13]},
        note="the check digit's algorithm is not published: format checked, not the check digit")


def check_code(code: str) -> CheckedCode:
    """Either kind, told apart by the licence prefix (a credit code never starts with J)."""
    if code.startswith(LICENCE_PREFIX):
        return validate_food_licence(code)
    return validate_credit_code(code)
