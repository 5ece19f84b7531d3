"""Selections kept in the page's address: pickers whose choice is read from and written to the URL's query
parameters, so that a copied link reopens what is shown (``linked_choice``), and the rule that parameters belong
to the page they were made on (``scope_links``)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Union

import streamlit as st

OPENED_PARAM = "open"  # the query parameter that keeps the opened models in the address (deep links)

LinkParams = Union[str, Callable[[Any], Mapping[str, str]]]


def _option_params(option: Any, params: LinkParams) -> dict[str, str]:
    return {params: str(option)} if isinstance(params, str) else {k: str(v) for k, v in params(option).items()}


def _link_matches(options: Sequence[Any], params: LinkParams) -> tuple[list[Any], bool]:
    """Options named by the URL's query parameters (best match first per value) and whether the URL named any.

    An option matches when each of its link parameters that the URL has holds one of the URL's values for it
    (a multi-valued parameter such as ``model=a&model=b`` names several options), and the URL has at least one
    of them; options that match on more parameters win (``?model=minilm&task=sst2`` picks "minilm / sst2"
    over "minilm / mrpc", and ``?model=minilm`` the first minilm run).
    """
    if not options:
        return [], False
    names = set(_option_params(options[0], params))
    for option in options[1:]:
        names |= set(_option_params(option, params))
    linked = {name: st.query_params.get_all(name) for name in names if name in st.query_params}
    if not linked:
        return [], False
    scored = []
    for position, option in enumerate(options):
        own = {name: value for name, value in _option_params(option, params).items() if name in linked}
        if own and all(value in linked[name] for name, value in own.items()):
            scored.append((-len(own), position, option))
    if not scored:
        return [], True
    best = min(score for score, _, _ in scored)
    return [option for score, _, option in sorted(scored) if score == best], True


def _write_link(selected: Sequence[Any], params: LinkParams) -> None:
    """Put the selection into the URL (only the parameters that changed, so reruns send nothing)."""
    values: dict[str, list[str]] = {}
    for option in selected:
        for name, value in _option_params(option, params).items():
            values.setdefault(name, []).append(value)
    for name, wanted in values.items():
        if st.query_params.get_all(name) != wanted:
            st.query_params[name] = wanted if len(wanted) > 1 else wanted[0]


def unlink(*names: str) -> None:
    """Remove parameters from the URL (a picker that is no longer shown)."""
    for name in names:
        if name in st.query_params:
            del st.query_params[name]


def scope_links(page: str) -> None:
    """Keep the URL's query parameters to the page they were made on (call once per run, before the page).

    A link opens a page with its parameters; moving to another page starts that page from its own defaults
    (its pickers then write their selections), as ``st.switch_page`` does without ``query_params``. The first
    page of a session keeps the parameters it was opened with.
    """
    last = st.session_state.get("_linked_page")
    if last is not None and last != page:
        st.query_params.clear()
        if st.session_state.get("opened_models"):  # the models the visitor opened stay in every page's address
            st.query_params[OPENED_PARAM] = st.session_state["opened_models"]
    st.session_state["_linked_page"] = page


def linked_choice(widget: str, label: str, options: Sequence[Any], *, key: str, params: LinkParams,
                  container: Any = None, index: int = 0, default: Optional[Sequence[Any]] = None,
                  **kwargs: Any) -> Any:
    """A selectbox, radio or multiselect whose selection is read from and written to the URL's query parameters.

    On the first render of the widget, a valid selection in the URL replaces ``index`` (``default`` for a
    multiselect); a value the URL names that is not among ``options`` is reported in one warning line and
    the page's default is shown. After every render the selection is written back, so the address in the
    browser always reopens what is shown. Widgets have a ``key``, so later changes of ``index``/``default``
    do not reset them (Streamlit keys such widgets by ``key``).

    Args:
        widget: "selectbox", "radio" or "multiselect".
        label, options, key, **kwargs: passed to the widget.
        params: the query parameter that holds ``str(option)``, or a function of an option returning its
            parameters, e.g. ``lambda run: {"model": run.model, "task": run.task}``.
        container: where to draw the widget (a column); the page by default.
        index, default: the page's own default selection.

    Returns:
        The widget's value.
    """
    if widget not in ("selectbox", "radio", "multiselect"):
        raise ValueError(f"unknown widget {widget!r}")
    draw = getattr(container if container is not None else st, widget)
    options = list(options)
    matches, named = _link_matches(options, params) if key not in st.session_state else ([], False)
    if named and not matches:
        shown = ", ".join(f"{n}={st.query_params.get(n)}" for n in sorted(_option_params(options[0], params))
                          if n in st.query_params)
        st.warning(f"The link's {shown or 'selection'} is not available for “{label}” here; showing the default.")
    if widget == "multiselect":
        limit = kwargs.get("max_selections")
        chosen = list(matches[:limit] if limit else matches) if matches else default
        value = draw(label, options, default=chosen, key=key, **kwargs)
        if value:
            _write_link(value, params)
        else:
            unlink(*{n for option in options[:1] for n in _option_params(option, params)})
        return value
    if matches:
        index = options.index(matches[0])
    value = draw(label, options, index=index, key=key, **kwargs)
    if value is not None:
        _write_link([value], params)
    return value
