"""Find an installed CJK font by a preference list, or fail clearly."""

from __future__ import annotations

from functools import cache

# Most preferred first. Debian: fonts-noto-cjk (Noto Sans/Serif CJK SC); fonts-wqy-zenhei.
PREFERRED_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Noto Serif CJK SC",
    "Source Han Serif SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Noto Sans CJK JP",
)

INSTALL_HINT = "请安装中文字体：apt-get install -y fonts-noto-cjk（或运行 make setup，root 身份会自动安装）"


class CJKFontNotFound(RuntimeError):
    """No usable CJK font is installed."""


@cache
def find_cjk_font() -> str:
    """The family name of the most preferred installed CJK font."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for family in PREFERRED_CJK_FONTS:
        if family in installed:
            return family
    raise CJKFontNotFound(
        f"未找到可用的中文字体（按优先顺序查找：{'、'.join(PREFERRED_CJK_FONTS)}）。{INSTALL_HINT}"
    )


def use_cjk_font() -> str:
    """Make matplotlib draw Chinese text with the CJK font; returns the family used."""
    import matplotlib as mpl

    family = find_cjk_font()
    mpl.rcParams["font.family"] = "sans-serif"
    mpl.rcParams["font.sans-serif"] = [family, *mpl.rcParams["font.sans-serif"]]
    mpl.rcParams["axes.unicode_minus"] = False
    return family


def css_font_stack() -> str:
    """The CSS font-family value for the HTML/PDF bulletin."""
    family = find_cjk_font()
    rest = [f for f in PREFERRED_CJK_FONTS if f != family]
    return ", ".join(f'"{f}"' for f in [family, *rest]) + ", sans-serif"
