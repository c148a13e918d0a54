"""What every reference API class has (``ModuleApiBase``): the info tuple's description, its
conversion to the API's JSON, and the low-level paging helpers (refused: they take the
reference server's method names)."""

from __future__ import annotations

from typing import Any, ClassVar

from appyard.compat._errors import refused

_PAGES = (
    "it pages through the reference server's HTTP methods by name; appyard's calls page "
    "themselves: use the class's get_list (or appyard's iter_list)."
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(x.title() for x in rest)


class ModuleBase:
    """``info_sequence`` / ``info_tuple_name`` / ``convert_info_to_json`` for the class's info
    tuple (``_info``), and the refused paging helpers."""

    _info: ClassVar[Any] = None

    @classmethod
    def info_sequence(cls) -> list[str]:
        """The info tuple's field names (the reference lists its API's camelCase names)."""
        return list(cls._info._fields)

    @classmethod
    def info_tuple_name(cls) -> str:
        return str(cls._info.__name__)

    @classmethod
    def convert_info_to_json(cls, info: Any) -> dict[str, Any]:
        """The info as the API's JSON: its fields under camelCase names."""
        return {_camel(k): v for k, v in info._asdict().items()}

    get_list_all_pages = refused("get_list_all_pages", _PAGES)
    get_list_all_pages_generator = refused("get_list_all_pages_generator", _PAGES)
    get_list_idx_page_async = refused("get_list_idx_page_async", _PAGES)
    get_list_page_generator_async = refused("get_list_page_generator_async", _PAGES)
