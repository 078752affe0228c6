"""haocha: 政务服务“好差评”数据 → 季度通报、数据质检与异常发现."""

from haocha_analysis.core import memory as _memory

__version__ = "0.1.0"

_memory.configure()  # before numpy is imported (its huge-page setting is read then)
