"""Seniority and job function from a free-text job title.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = [
    "FUNCTIONS",
    "FUNCTION_RULES",
    "SENIORITIES",
    "SENIORITY_RULES",
    "TITLE_FEATURES",
    "parse_title",
    "parse_titles",
]

#: Seniority labels, most senior first; ``unknown`` when no rule matches.
SENIORITIES: tuple[str, ...] = (
    "c_level",
    "vp",
    "director",
    "head",
    "manager",
    "senior_ic",
    "ic",
    "student",
    "unknown",
)
#: Function labels; ``other`` when no rule matches.
FUNCTIONS: tuple[str, ...] = (
    "engineering",
    "it",
    "data",
    "finance",
    "procurement",
    "marketing",
    "sales",
    "operations",
    "hr",
    "executive",
    "education",
    "other",
)
#: Names of the columns :func:`parse_titles` returns.
TITLE_FEATURES: tuple[str, ...] = ("title_seniority", "title_function")

_UNKNOWN_SENIORITY = "unknown"
_OTHER_FUNCTION = "other"

#: Ordered (label, pattern) rules for seniority: the first match wins.
SENIORITY_RULES: tuple[tuple[str, str], ...] = (
    (
        "student",
        r"\b(?:student|intern|internship|trainee|apprentice|undergrad(?:uate)?|"
        r"ph\.?d\.? candidate|graduate assistant|"
        # FR, DE, ES, PT, NL
        r"[ée]tudiante?|stagiaire|alternante?|praktikant(?:in)?|werkstudent(?:in)?|azubi|"
        r"estudiante|becari[oa]|estudante|estagi[aá]ri[oa]|stagiair)\b",
    ),
    # Assistants *to* an executive are not executives.
    ("ic", r"\b(?:executive|personal|administrative) assistant\b|\bassistant to\b"),
    ("senior_ic", r"\bproduct owner\b"),
    (
        "vp",
        r"\b(?:s|e|a)?vp\b|\bv\.\s?p\.|\bvice[- ]president\b|"
        r"\bvice[- ]?pr[ée]sidente?\b|\bvicepresidente?\b",
    ),
    (
        "c_level",
        r"\b(?:c[efotimrdpsc]o|ciso|chro|chief|founder|co-?founder|owner|president|"
        r"managing partner|"
        r"pdg|dg|directeur g[ée]n[ée]ral|directrice g[ée]n[ée]rale|pr[ée]sidente?|fondateur|"
        r"fondatrice|gesch[äa]ftsf[üu]hrer(?:in)?|vorstand\w*|inhaber(?:in)?|gr[üu]nder(?:in)?|"
        r"director general|directora general|gerente general|fundador(?:a)?|"
        r"diretor(?:a)? geral|s[óo]ci[oa]|algemeen directeur|oprichter|eigenaar)\b",
    ),
    (
        "director",
        r"\b(?:director|dir|directeur|directrice|direktor(?:in)?|directora|diretor(?:a)?|"
        r"daf|drh|dsi)\b",
    ),
    (
        "head",
        r"\bhead\b|\b(?:responsable|chef|cheffe|leiter(?:in)?|leitung|jefe|jefa|chefe|"
        r"hoofd|afdelingshoofd)\b",
    ),
    (
        "manager",
        r"\b(?:manager|mgr|supervisor|team lead(?:er)?|gerente|gestor(?:a)?|gestionnaire|"
        r"teamleiter(?:in)?|coordinador(?:a)?|coordenador(?:a)?|teamleider|bedrijfsleider)\b",
    ),
    (
        "senior_ic",
        r"\b(?:senior|sr|principal|staff|lead|expert|architect|s[ée]nior|experte|"
        r"architecte|arquitect[oa]|arquiteto)\b",
    ),
    (
        "ic",
        r"\b(?:engineer|developer|analyst|scientist|consultant|specialist|associate|"
        r"coordinator|representative|rep|administrator|admin|accountant|designer|"
        r"programmer|technician|officer|executive|agent|buyer|recruiter|writer|"
        r"teacher|professor|lecturer|researcher|clerk|planner|strategist|advisor|"
        r"assistant|partner|junior|jr|"
        r"ing[ée]nieur(?:e)?|ingenieur(?:in)?|ingeniera?o?|engenheir[oa]|analyste|analista|"
        r"d[ée]veloppeu(?:r|se)|entwickler(?:in)?|desarrollador(?:a)?|desenvolvedor(?:a)?|"
        r"ontwikkelaar|comptable|contable|contador(?:a)?|buchhalter(?:in)?|boekhouder|"
        r"consultante?|berater(?:in)?|consultor(?:a)?|adviseur|assistante?|asistente|"
        r"assistente|medewerker|mitarbeiter(?:in)?|sachbearbeiter(?:in)?|referent(?:in)?|"
        r"t[ée]cnic[oa]|technicien(?:ne)?|commercial(?:e)?|vendedor(?:a)?|verk[äa]ufer(?:in)?|"
        r"verkoper|charg[ée]e? d[e']|auxiliar|employ[ée]e?)\b",
    ),
)

#: Ordered (label, pattern) rules for the job function: the first match wins.
FUNCTION_RULES: tuple[tuple[str, str], ...] = (
    (
        "education",
        r"\b(?:student|teacher|professor|lecturer|faculty|academic|school|university|"
        r"college|ph\.?d|tutor|educat\w*)\b",
    ),
    (
        "finance",
        r"\b(?:cfo|finance|financial|accounting|accountant|accounts payable|controller|"
        r"comptroller|treasur\w*|fp&a|audit\w*|tax|bookkeep\w*|payroll|"
        r"financ\w*|finanz\w*|comptab\w*|contab\w*|contador\w*|buchhalt\w*|boekhoud\w*|"
        r"daf|tr[ée]sor\w*|tesorer\w*|tesour\w*|controlling|fiscal\w*|steuer\w*)\b",
    ),
    (
        "procurement",
        r"\b(?:procurement|purchasing|purchaser|buyer|sourcing|vendor management|"
        r"category manager|achats?|acheteu(?:r|se)|approvisionnement|einkauf\w*|"
        r"eink[äa]ufer(?:in)?|beschaffung|compras|comprador(?:a)?|aprovisionamiento|"
        r"suprimentos|inkoop|inkoper)\b",
    ),
    (
        "hr",
        r"\b(?:hr|hris|human resources?|people|talent|recruit\w*|chro|workforce|rh|drh|"
        r"ressources humaines|personalabteilung|personalleit\w*|personalwesen|"
        r"recursos humanos|personeelszaken|hrm)\b",
    ),
    (
        "data",
        r"\b(?:data|analytics|machine learning|ml|ai|artificial intelligence|"
        r"business intelligence|bi|cdo|statistic\w*|insights|donn[ée]es|datos|dados|daten)\b",
    ),
    (
        "it",
        r"\b(?:it|information technology|cio|ciso|infrastructure|sysadmin|"
        r"systems? administrator|network\w*|help ?desk|service desk|security|cyber\w*|"
        r"informatique|inform[áa]tica|informatik|ict|ti|dsi|sistemas|s[ée]curit[ée])\b",
    ),
    (
        "marketing",
        r"\b(?:marketing|marketer|cmo|brand|growth|content|seo|sem|demand gen\w*|"
        r"communications?|pr|public relations|social media|campaigns?|advertising|"
        r"mercadeo|mercadotecnia|comunicaci[óo]n|comunica[çc][ãa]o|kommunikation|"
        r"communicatie|publicit\w*|werbung)\b",
    ),
    (
        "sales",
        r"\b(?:sales|account executive|account manager|sdr|bdr|business development|cro|"
        r"revenue|customer success|partnerships?|inside sales|key accounts?|"
        r"ventes?|commercial\w*|vertrieb\w*|verkauf\w*|verk[äa]ufer\w*|ventas|vendas|"
        r"verkoop|verkoper|comercial\w*|vendedor\w*)\b",
    ),
    (
        "engineering",
        r"\b(?:engineer\w*|developer|software|cto|chief technology officer|architect|"
        r"devops|sre|programmer|technical|tech|r&d|qa|quality assurance|firmware|"
        r"platform|backend|frontend|full[- ]?stack|"
        r"ing[ée]nieu\w*|ingenieur\w*|ingenier\w*|engenh\w*|d[ée]velopp\w*|entwickl\w*|"
        r"desarroll\w*|desenvolv\w*|ontwikkel\w*|logiciel|technique|t[ée]cnic[oa]|"
        r"technisch\w*|techniek|bureau d'[ée]tudes)\b",
    ),
    (
        "operations",
        r"\b(?:operations|ops|coo|chief operating officer|logistics|supply chain|"
        r"facilities|project manager|program manager|pmo|office manager|"
        r"op[ée]rations|operaciones|opera[çc][õo]es|betrieb\w*|logistique|log[íi]stica|"
        r"logistik|logistiek|production|producci[óo]n|produ[çc][ãa]o|produktion|productie|"
        r"chef de projet|projektleiter\w*|jefe de proyecto|projectleider)\b",
    ),
    # Product management is its own function; "owner" must not make it executive.
    ("other", r"\bproduct (?:owner|manager|management)\b"),
    (
        "executive",
        r"\b(?:ceo|chief executive|founder|co-?founder|owner|president|general manager|"
        r"managing director|board|chairman|chair|managing partner|"
        r"pdg|directeur g[ée]n[ée]ral|directrice g[ée]n[ée]rale|gesch[äa]ftsf[üu]hr\w*|"
        r"vorstand\w*|director general|gerente general|diretor(?:a)? geral|"
        r"algemeen directeur)\b",
    ),
)

_FLAGS = re.IGNORECASE | re.DOTALL


def _priority_pattern(rules: Sequence[tuple[str, str]]) -> str:
    """One regex that tries each rule over the whole string before the next one."""
    alternatives = "|".join(f".*?(?P<g{i}>{pattern})" for i, (_, pattern) in enumerate(rules))
    return f"^(?:{alternatives})"


_SENIORITY_PATTERN = _priority_pattern(SENIORITY_RULES)
_FUNCTION_PATTERN = _priority_pattern(FUNCTION_RULES)
_SENIORITY_RE = re.compile(_SENIORITY_PATTERN, _FLAGS)
_FUNCTION_RE = re.compile(_FUNCTION_PATTERN, _FLAGS)
_SENIORITY_LABELS = np.array([label for label, _ in SENIORITY_RULES] + [_UNKNOWN_SENIORITY])
_FUNCTION_LABELS = np.array([label for label, _ in FUNCTION_RULES] + [_OTHER_FUNCTION])


def _usable(title: object) -> bool:
    """A title worth matching: a string with something besides whitespace."""
    return isinstance(title, str) and bool(title.strip())


def _label_one(regex: re.Pattern[str], labels: np.ndarray, title: str) -> str:
    match = regex.match(title)
    if match is None or match.lastgroup is None:
        return str(labels[-1])
    return str(labels[int(match.lastgroup[1:])])


def parse_title(title: object) -> tuple[str, str]:
    """Seniority and function of one job title."""
    return _parse_text(title) if _usable(title) else (_UNKNOWN_SENIORITY, _OTHER_FUNCTION)


@lru_cache(maxsize=4096)
def _parse_text(title: str) -> tuple[str, str]:
    # Titles repeat a lot in a stream of scoring requests: match each once.
    return (
        _label_one(_SENIORITY_RE, _SENIORITY_LABELS, title),
        _label_one(_FUNCTION_RE, _FUNCTION_LABELS, title),
    )


def _label_many(uniques: pd.Series, pattern: str, labels: np.ndarray) -> np.ndarray:
    """Label of each distinct title: the index of the one rule group that matched."""
    matched = uniques.str.extract(pattern, flags=_FLAGS, expand=True).notna().to_numpy()
    first = np.where(matched.any(axis=1), matched.argmax(axis=1), len(labels) - 1)
    return labels[first]


def parse_titles(titles: pd.Series) -> pd.DataFrame:
    """Seniority and function of every job title in a column."""
    codes, uniques = pd.factorize(titles, use_na_sentinel=True)
    values = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    usable = np.fromiter((_usable(v) for v in values), dtype=bool, count=len(values))
    seniority = np.full(len(values) + 1, _UNKNOWN_SENIORITY, dtype=object)
    function = np.full(len(values) + 1, _OTHER_FUNCTION, dtype=object)
    if usable.any():
        seniority[:-1][usable] = _label_many(values[usable], _SENIORITY_PATTERN, _SENIORITY_LABELS)
        function[:-1][usable] = _label_many(values[usable], _FUNCTION_PATTERN, _FUNCTION_LABELS)
    # Missing titles have code -1, which picks the fallback in the last slot.
    return pd.DataFrame(
        {
            "title_seniority": pd.array(seniority[codes], dtype="str"),
            "title_function": pd.array(function[codes], dtype="str"),
        },
        index=titles.index,
    )
