"""Faults: one vocabulary of frozen value objects, and the one source of their signatures.

Each fault class *is* its signature: the dataclass fields, in order, are the marker's and the
`chaos` method's arguments (`Latency("redis", 200, jitter=20)` ==
`@pytest.mark.latency("redis", 200, jitter=20)` == `chaos.latency("redis", 200, jitter=20)`).
Positional fields are required, keyword-only ones have defaults; a field's `metadata` carries
its unit and bounds, a `Literal` annotation its allowed values. `markers.py` and `chaos.py`
derive everything from here, and `build_fault` checks the arguments with the messages users
see. Applying a fault is `apply.py`'s job.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeVar

Stream = Literal["downstream", "upstream", "both"]
NetworkDownMode = Literal["refuse", "blackhole", "reset"]
# Modes that act on the service's process (or container) rather than on its proxy; each is
# undone by bringing the service back to serving (start, or resume after pause).
ProcessDownMode = Literal["kill", "terminate", "stop", "pause"]
DownMode = Literal[NetworkDownMode, ProcessDownMode]
BandwidthUnit = Literal["KB/s", "datagrams/s"]

STREAMS: tuple[str, ...] = typing.get_args(Stream)
NETWORK_DOWN_MODES: tuple[str, ...] = typing.get_args(NetworkDownMode)
PROCESS_DOWN_MODES: tuple[str, ...] = typing.get_args(ProcessDownMode)
DOWN_MODES: tuple[str, ...] = NETWORK_DOWN_MODES + PROCESS_DOWN_MODES
MS_PER_DAY = 86_400_000
# Options every fault on a proxy inherits; shown after the fault's own ones.
COMMON_OPTIONS = ("stream", "toxicity")


class FaultError(ValueError):
    """A fault was described with a value that is not allowed; the message says what is."""


@dataclass(frozen=True)
class Bound:
    """How one numeric option of a fault is checked, and its unit for messages and help."""

    unit: str
    minimum: float = 0
    maximum: float = MS_PER_DAY
    whole: bool = True

    def allowed(self) -> str:
        """What the option allows, for messages: "a whole number of milliseconds from 0 to
        86400000"."""
        span = f"from {_number(self.minimum)} to {_number(self.maximum)}"
        if self.unit == "probability":
            return f"a probability {span}"
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} of {self.unit} {span}"

    def check(self, fault: str, option: str, value: object) -> None:
        """Raise FaultError naming `fault`, `option` and what is allowed unless `value` fits."""
        valid_type = isinstance(value, int) if self.whole else isinstance(value, int | float)
        if (
            isinstance(value, bool)
            or not valid_type
            or not math.isfinite(value)  # type: ignore[arg-type]
            or not self.minimum <= value <= self.maximum  # type: ignore[operator]
        ):
            raise FaultError(f"{fault}: {option} must be {self.allowed()}, got {value!r}")


def bound(
    unit: str, *, minimum: float = 0, maximum: float = MS_PER_DAY, whole: bool = True
) -> dict[str, Bound]:
    """A field's metadata: `ms: int = field(metadata=bound("milliseconds"))`."""
    return {"bound": Bound(unit, minimum, maximum, whole)}


PROBABILITY = bound("probability", maximum=1, whole=False)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Fault:
    """Something wrong with a dependency, reached through the proxy (or service) `target`.

    Subclasses set `kind` (the marker's and the `chaos` method's name) and `help` (one line,
    with units, for `pytest --markers`)."""

    target: str
    kind: ClassVar[str] = ""
    help: ClassVar[str] = ""
    # What the first argument is called and means, in signatures and messages (a DNS fault's
    # is a host pattern, not a proxy), and an example value for the messages.
    target_name: ClassVar[str] = "target"
    target_help: ClassVar[str] = "a proxy or service name"
    target_example: ClassVar[str] = "redis"

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise FaultError(
                f"{self.kind}: {self.target_name} must be {self.target_help}, got {self.target!r}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            rule = f.metadata.get("bound")
            if rule is not None:
                rule.check(self.kind, f.name, value)
            choices = literal_choices(type(self), f.name)
            if choices and value not in choices:
                raise FaultError(
                    f"{self.kind}: {f.name} must be one of {', '.join(choices)}, got {value!r}"
                )

    def options(self) -> dict[str, Any]:
        """Every option but the target, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "target"}

    def __str__(self) -> str:
        return f"{self.kind}({', '.join([repr(self.target), *self._shown_options()])})"

    def _shown_options(self) -> list[str]:
        # The fault's own options first, inherited ones (stream, toxicity) last; options left
        # at their defaults are not shown.
        return [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in ordered_fields(type(self))
            if not _is_default(self, f)
        ]

    def as_python(self) -> str:
        """The call that builds this fault again, options at their defaults left out:
        `Latency('redis', ms=200)`. Hypothesis prints faults this way (`_repr_pretty_`), so
        that a falsifying example can be pasted into `@example(...)`."""
        return f"{type(self).__name__}({', '.join([repr(self.target), *self._shown_options()])})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.as_python())


def _is_default(fault: Fault, f: dataclasses.Field[Any]) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(getattr(fault, f.name) == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(getattr(fault, f.name) == f.default_factory())
    return False


_ORDERED: dict[type, tuple[dataclasses.Field[Any], ...]] = {}
_CHOICES: dict[tuple[type, str], tuple[str, ...]] = {}


def ordered_fields(cls: type[Fault]) -> tuple[dataclasses.Field[Any], ...]:
    """The options of `cls` as users write them: required ones in order, then the fault's own
    keyword options, then the common ones (stream, toxicity)."""
    found = _ORDERED.get(cls)
    if found is None:
        own = [f for f in fields(cls) if f.name != "target"]
        required = [f for f in own if not f.kw_only]
        keywords = [f for f in own if f.kw_only and f.name not in COMMON_OPTIONS]
        common = [f for f in own if f.kw_only and f.name in COMMON_OPTIONS]
        found = _ORDERED[cls] = (*required, *keywords, *common)
    return found


def literal_choices(cls: type[Fault], name: str) -> tuple[str, ...]:
    """The values a `Literal`-annotated field allows (empty for other fields)."""
    found = _CHOICES.get((cls, name))
    if found is None:
        hint = typing.get_type_hints(cls).get(name)
        literal = typing.get_origin(hint) is Literal
        found = _CHOICES[(cls, name)] = tuple(_flatten_literal(hint)) if literal else ()
    return found


def _flatten_literal(hint: Any) -> list[str]:
    values: list[str] = []
    for arg in typing.get_args(hint):
        values += _flatten_literal(arg) if typing.get_origin(arg) is Literal else [arg]
    return values


# ------------------------------------------------------------------------- faults on a proxy
@dataclass(frozen=True)
class ToxicFault(Fault):
    """A fault made of one Toxiproxy toxic per stream."""

    _: KW_ONLY
    stream: Stream = "downstream"
    toxicity: float = field(default=1.0, metadata=PROBABILITY)
    toxic_type: ClassVar[str]

    def streams(self) -> tuple[str, ...]:
        """The Toxiproxy streams the fault acts on (`both` is upstream and downstream)."""
        return ("upstream", "downstream") if self.stream == "both" else (self.stream,)

    def attributes(self) -> dict[str, int]:
        """The toxic's attributes, by their Toxiproxy names."""
        return {}


@dataclass(frozen=True)
class Latency(ToxicFault):
    """Delay each chunk by `ms` milliseconds, +/- `jitter` ms."""

    ms: int = field(metadata=bound("milliseconds"))
    _: KW_ONLY
    jitter: int = field(default=0, metadata=bound("milliseconds"))
    kind = "latency"
    help = "delay data through the proxy by ms milliseconds, +/- jitter ms."
    toxic_type = "latency"

    def attributes(self) -> dict[str, int]:
        return {"latency": self.ms, "jitter": self.jitter}


@dataclass(frozen=True)
class Bandwidth(ToxicFault):
    """Limit throughput to `rate` KB/s (1 KB = 1000 bytes); 0 stops data entirely."""

    rate: int = field(metadata=bound("KB/s", maximum=10**9))
    _: KW_ONLY
    # On a UDP proxy, the rate may count datagrams instead (the engine's `datagrams`).
    unit: BandwidthUnit = "KB/s"
    kind = "bandwidth"
    help = (
        "limit throughput to rate KB/s (1 KB = 1000 bytes); 0 stops data. On a UDP proxy,"
        " unit='datagrams/s' counts datagrams."
    )
    toxic_type = "bandwidth"

    def attributes(self) -> dict[str, int]:
        if self.unit == "datagrams/s":
            return {"rate": 0, "datagrams": self.rate}
        return {"rate": self.rate}


@dataclass(frozen=True)
class Stall(ToxicFault):
    """Swallow all data; close after `timeout` ms without data (0: never close)."""

    _: KW_ONLY
    timeout: int = field(default=0, metadata=bound("milliseconds"))
    kind = "stall"
    help = (
        "swallow all data; close after timeout ms without data (0: never). "
        "Toxiproxy's timeout toxic."
    )
    toxic_type = "timeout"

    def attributes(self) -> dict[str, int]:
        return {"timeout": self.timeout}


@dataclass(frozen=True)
class ResetPeer(ToxicFault):
    """Reset the connection (TCP RST) `timeout` ms after the first data."""

    _: KW_ONLY
    timeout: int = field(default=0, metadata=bound("milliseconds"))
    kind = "reset_peer"
    help = "reset connections (TCP RST) timeout ms after their first data."
    toxic_type = "reset_peer"

    def attributes(self) -> dict[str, int]:
        return {"timeout": self.timeout}


@dataclass(frozen=True)
class SlowClose(ToxicFault):
    """Hold the close (FIN) back by `delay` ms."""

    delay: int = field(metadata=bound("milliseconds"))
    kind = "slow_close"
    help = "hold each connection's close back by delay ms."
    toxic_type = "slow_close"

    def attributes(self) -> dict[str, int]:
        return {"delay": self.delay}


@dataclass(frozen=True)
class Slicer(ToxicFault):
    """Cut data into writes of `average_size` +/- `size_variation` bytes, `delay` us apart."""

    average_size: int = field(metadata=bound("bytes", minimum=1, maximum=2**31))
    _: KW_ONLY
    size_variation: int = field(default=0, metadata=bound("bytes", maximum=2**31))
    delay: int = field(default=0, metadata=bound("microseconds", maximum=MS_PER_DAY * 1000))
    kind = "slicer"
    help = (
        "cut data into writes of average_size +/- size_variation bytes, delay MICROseconds apart."
    )
    toxic_type = "slicer"

    def __post_init__(self) -> None:
        super().__post_init__()
        # As upstream: a variation as large as the average is fine (slices of 1 byte and up);
        # a larger one is not.
        if self.size_variation > self.average_size:
            raise FaultError(
                f"slicer: size_variation must be at most average_size ({self.average_size}),"
                f" got {self.size_variation}"
            )

    def attributes(self) -> dict[str, int]:
        return {
            "average_size": self.average_size,
            "size_variation": self.size_variation,
            "delay": self.delay,
        }


@dataclass(frozen=True)
class LimitData(ToxicFault):
    """Close the connection after `bytes` bytes in the stream."""

    bytes: int = field(metadata=bound("bytes", maximum=2**53))
    kind = "limit_data"
    help = "close connections after bytes bytes in the stream."
    toxic_type = "limit_data"

    def attributes(self) -> dict[str, int]:
        return {"bytes": self.bytes}


@dataclass(frozen=True)
class RawToxic(ToxicFault):
    """Any toxic type by its Toxiproxy name, with raw attributes (the `toxic` marker)."""

    type: str
    _: KW_ONLY
    toxic_attributes: Mapping[str, int] = field(default_factory=dict)
    kind = "toxic"
    help = "add any Toxiproxy toxic type with raw integer attributes."
    # The marker and the `chaos` method take the attributes as `**attributes`.
    takes_any_keyword: ClassVar[str] = "toxic_attributes"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.type, str) or not self.type:
            raise FaultError(f"toxic: type must be a toxic type name, got {self.type!r}")
        for key, value in self.toxic_attributes.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultError(f"toxic: attribute {key} must be a whole number, got {value!r}")

    def attributes(self) -> dict[str, int]:
        return dict(self.toxic_attributes)


# ------------------------------------------------------------------- the dependency goes away
@dataclass(frozen=True)
class Down(Fault):
    """The dependency is unreachable. Through its proxy: `refuse` (connection refused),
    `blackhole` (traffic vanishes, nothing answers), `reset` (connections are reset). On a
    service the plugin started: `kill` (SIGKILL), `terminate` (SIGTERM), `stop` (graceful
    stop), `pause` (SIGSTOP / docker pause: connections open, nothing answers)."""

    _: KW_ONLY
    mode: DownMode = "refuse"
    kind = "dependency_down"
    help = (
        "make the dependency unreachable: mode 'refuse' (connection refused), "
        "'blackhole' (nothing answers, nothing closes) or 'reset' (TCP resets) at its "
        "proxy; or, on a service the plugin started, 'kill' (SIGKILL), 'terminate' "
        "(SIGTERM), 'stop' (graceful) or 'pause' (frozen), undone after the test."
    )

    @property
    def acts_on_process(self) -> bool:
        """True for the modes that act on a service's process rather than on its proxy."""
        return self.mode in PROCESS_DOWN_MODES


# --------------------------------------------------------------------- the registry and builder
FAULT_TYPES: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (Latency, Bandwidth, Stall, ResetPeer, SlowClose, Slicer, LimitData, Down, RawToxic)
}

FaultT = TypeVar("FaultT", bound=Fault)


def register(cls: type[FaultT]) -> type[FaultT]:
    """Add a fault class to the vocabulary (its marker and `chaos` method follow from it)."""
    if not cls.kind or not cls.help:
        raise TypeError(f"{cls.__name__} needs a kind and a help line to be registered")
    FAULT_TYPES[cls.kind] = cls
    return cls


def signature(cls: type[Fault]) -> str:
    """`latency(target, ms, *, jitter=0, stream='downstream', toxicity=1.0)`."""
    parts = [cls.target_name]
    star = False
    for f in ordered_fields(cls):
        if f.name == getattr(cls, "takes_any_keyword", None):
            continue
        if f.kw_only and not star:
            parts.append("*")
            star = True
        parts.append(f"{f.name}={_default(f)!r}" if f.kw_only or _has_default(f) else f.name)
    if getattr(cls, "takes_any_keyword", None):
        parts.append("**attributes")
    return f"{cls.kind}({', '.join(parts)})"


def _has_default(f: dataclasses.Field[Any]) -> bool:
    # A positional option may have a default too (`http_error(target, status=503, ...)`).
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def allowed_keywords(cls: type[Fault]) -> list[str]:
    """The keyword arguments `cls` takes, in the order users write them."""
    return [f.name for f in ordered_fields(cls) if f.name != getattr(cls, "takes_any_keyword", "")]


def build_fault(
    cls: type[FaultT],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    also_allowed: tuple[str, ...] = (),
) -> FaultT:
    """`cls(*args, **kwargs)` with the arguments checked first, so that every mistake is a
    FaultError saying, after the fault's kind, what is wrong and what is allowed
    (`also_allowed`: keywords the caller took out before, such as a marker's `when`)."""
    kind = cls.kind
    sig = signature(cls)
    kwargs = dict(kwargs)
    name, meaning = cls.target_name, cls.target_help
    if name in kwargs:
        if args:
            raise FaultError(f"{kind}: {name} given twice (positionally and by keyword)")
        args = (kwargs.pop(name),)
    if not args:
        raise FaultError(
            f"{kind}: the first argument must be the {name}, {meaning}"
            f" (e.g. {kind}({cls.target_example!r}, ...)); signature: {sig}"
        )
    target, *positional = args
    if not isinstance(target, str):
        raise FaultError(
            f"{kind}: the first argument must be the {name}, {meaning}, got"
            f" {target!r}; signature: {sig}"
        )
    required = [f.name for f in ordered_fields(cls) if not f.kw_only]
    if len(positional) > len(required):
        raise FaultError(f"{kind}: too many positional arguments {tuple(args)!r}; signature: {sig}")
    values: dict[str, Any] = dict(zip(required, positional, strict=False))
    extra: dict[str, Any] = {}
    known = allowed_keywords(cls)
    catch_all = getattr(cls, "takes_any_keyword", None)
    for key, value in kwargs.items():
        if key in values:
            raise FaultError(f"{kind}: {key} given twice (positionally and by keyword)")
        if key in known:
            values[key] = value
        elif catch_all:
            extra[key] = value
        else:
            allowed = ", ".join([*known, *also_allowed])
            raise FaultError(f"{kind}: unknown keyword {key!r}; allowed: {allowed}")
    optional = {f.name for f in ordered_fields(cls) if _has_default(f)}
    missing = [name for name in required if name not in values and name not in optional]
    if missing:
        raise FaultError(f"{kind}: missing required argument {missing[0]!r}; signature: {sig}")
    if catch_all:
        values[catch_all] = extra
    return cls(target, **values)


def python_signature(cls: type[Fault]) -> inspect.Signature:
    """The signature of the `chaos` method for `cls` (target and the options in user order)."""
    params = [inspect.Parameter(cls.target_name, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    catch_all = getattr(cls, "takes_any_keyword", None)
    for f in ordered_fields(cls):
        if f.name == catch_all:
            continue
        if f.kw_only:
            params.append(
                inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_default(f))
            )
        else:
            default = _default(f) if _has_default(f) else inspect.Parameter.empty
            params.append(
                inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
            )
    if catch_all:
        params.append(inspect.Parameter("attributes", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


# --------------------------------------------------------------------------- DNS resolution
DnsErrorKind = Literal["nxdomain", "servfail", "refused", "timeout", "empty"]
DNS_ERRORS: tuple[str, ...] = typing.get_args(DnsErrorKind)
# glibc's own timeout with an untuned resolv.conf (`options timeout:5 attempts:2`, one
# nameserver): getaddrinfo against a server that never answers failed after 10.0 s (measured,
# see the README's "DNS failures" section).
GLIBC_TIMEOUT_MS = 10_000
_LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def normalize_dns_name(name: str) -> str:
    """How names are compared: DNS is case-insensitive, and `db.internal.` is `db.internal`."""
    return name.rstrip(".").lower() if name != "." else name


def dns_name_problem(value: object, *, pattern: bool) -> str | None:
    """Why `value` is not a host name (or, with `pattern`, a host pattern such as
    `*.internal`: `*` as the whole leftmost label, standing for one or more labels, or `*`
    alone for every name); None when it is one."""
    import ipaddress

    if not isinstance(value, str) or not value.strip("."):
        return "not a host name"
    name = normalize_dns_name(value)
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return "an IP address is never looked up in DNS; name the host the client resolves"
    if ":" in name:
        return "a host name has no port"
    labels = name.split(".")
    if pattern and labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return None  # "*": every name
    if len(name) > 253:
        return "longer than 253 characters"
    for label in labels:
        if label == "*" or "*" in label:
            return (
                "'*' stands only for the whole leftmost label (e.g. '*.internal')"
                if pattern
                else "a name to resolve has no wildcard"
            )
        if not label:
            return "it has an empty label"
        if len(label) > 63:
            return f"label {label[:20]!r}... is longer than 63 characters"
        wrong = sorted(set(label) - _LABEL_CHARACTERS)
        if wrong:
            return f"{wrong[0]!r} is not allowed in a host name (letters, digits, '-', '_', '.')"
    return None


def dns_name_matches(pattern: str, name: str) -> bool:
    """Does the (normalized) `name` match the host pattern (exact, `*.suffix` or `*`)?"""
    pattern = normalize_dns_name(pattern)
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


@register
@dataclass(frozen=True)
class DnsFailure(Fault):
    """DNS lookups of `host` (a name, or a pattern such as `*.internal`) fail with `error`,
    each with `probability`, after `delay` ms; `error="timeout"` hangs `timeout` ms first.

    Errors: `nxdomain` (no such name), `servfail` (the resolver failed), `refused` (the
    resolver refused), `timeout` (no answer), `empty` (an answer with no address). `delay`
    slows every matching lookup, failed or not: with `probability=0`, lookups are slow and
    succeed. Applied to the in-process resolver and to the plugin's DNS server alike."""

    _: KW_ONLY
    error: DnsErrorKind = "nxdomain"
    probability: float = field(default=1.0, metadata=PROBABILITY)
    delay: int = field(default=0, metadata=bound("milliseconds"))
    timeout: int = field(default=GLIBC_TIMEOUT_MS, metadata=bound("milliseconds"))
    kind = "dns_failure"
    help = (
        "DNS lookups of host (a name or a pattern such as '*.internal') fail with error "
        "(nxdomain, servfail, refused, timeout: no answer for timeout ms, empty: no address), "
        "each lookup with probability 0..1, after delay ms (probability=0: slow but "
        "successful). In-process resolver and the plugin's DNS server."
    )
    target_name = "host"
    target_help = "a host name or a pattern such as '*.internal'"
    target_example = "db.internal"

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = dns_name_problem(self.target, pattern=True)
        if problem is not None:
            raise FaultError(
                f"{self.kind}: host must be {self.target_help}, got {self.target!r}: {problem}"
            )

    @property
    def host(self) -> str:
        """The name or pattern whose lookups fail."""
        return self.target

    def matches(self, name: str) -> bool:
        """Does this fault act on lookups of `name` (normalized)?"""
        return dns_name_matches(self.target, name)


# ------------------------------------------------------------------------------ packets
# Faults only the pytest-chaos engine has: loss on TCP and UDP proxies, and what datagrams
# suffer besides (applied by `packet_faults.py`, which checks the backend and the protocol).
@register
@dataclass(frozen=True)
class PacketLoss(ToxicFault):
    """Lose each packet with probability `rate` (bursty with `correlation`). On a TCP proxy a
    loss is what TCP makes of it: a stall of a retransmission timeout (200 ms, doubling on each
    loss of the same segment), never missing bytes, and a reset after `retries` lost
    retransmissions; a lost SYN holds a new connection back 1 s, 2 s, ... for up to
    `syn_retries` retries. On a UDP proxy, datagrams are lost."""

    rate: float = field(metadata=PROBABILITY)
    _: KW_ONLY
    correlation: float = field(default=0.0, metadata=PROBABILITY)
    retries: int = field(default=15, metadata=bound("retransmissions", maximum=255))
    syn_retries: int = field(default=6, metadata=bound("retransmissions", maximum=255))
    kind = "packet_loss"
    help = (
        "lose each packet with probability rate 0..1 (correlation 0..1: burstiness, the mean "
        "kept). TCP: stalls of a retransmission timeout from 200 ms doubling, a reset after "
        "retries (15, Linux's tcp_retries2), lost SYNs hold new connections 1 s, 2 s... "
        "(syn_retries 6); never lost bytes. UDP: datagrams lost."
    )
    toxic_type = "packet_loss"

    def attributes(self) -> dict[str, Any]:
        # Upstream's names for the first two (numbers 0..1), Linux's sysctls for the others.
        return {
            "loss_rate": self.rate,
            "correlation": self.correlation,
            "retries": self.retries,
            "syn_retries": self.syn_retries,
        }


@register
@dataclass(frozen=True)
class Duplicate(ToxicFault):
    """Send each datagram twice with `probability` (UDP proxies)."""

    probability: float = field(metadata=PROBABILITY)
    kind = "duplicate"
    help = "send each datagram twice with probability 0..1 (UDP proxies)."
    toxic_type = "duplicate"

    def attributes(self) -> dict[str, Any]:
        return {"probability": self.probability}


@register
@dataclass(frozen=True)
class Reorder(ToxicFault):
    """Hold each datagram back with `probability` until `distance` later ones overtook it, or
    at most `delay` ms (UDP proxies)."""

    probability: float = field(metadata=PROBABILITY)
    _: KW_ONLY
    distance: int = field(default=1, metadata=bound("datagrams", minimum=1, maximum=10_000))
    delay: int = field(default=20, metadata=bound("milliseconds"))
    kind = "reorder"
    help = (
        "hold each datagram back with probability 0..1 until distance later datagrams "
        "overtook it, or at most delay ms (UDP proxies)."
    )
    toxic_type = "reorder"

    def attributes(self) -> dict[str, Any]:
        return {"probability": self.probability, "distance": self.distance, "delay": self.delay}


@register
@dataclass(frozen=True)
class Corrupt(ToxicFault):
    """Flip one random bit of each datagram with `probability` (UDP proxies; opt-in, since
    UDP's checksum would catch it on a real network unless the sender skips it)."""

    probability: float = field(metadata=PROBABILITY)
    kind = "corrupt"
    help = "flip one random bit of each datagram with probability 0..1 (UDP proxies)."
    toxic_type = "corrupt"

    def attributes(self) -> dict[str, Any]:
        return {"probability": self.probability}


# ------------------------------------------------------------------------------ HTTP faults
# A header name or method is an HTTP token (RFC 9110, section 5.6.2).
_TOKEN_CHARACTERS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
MATCH_KEYS = ("method", "path", "headers")
# Headers an injected answer sets from its own body and the connection's state.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
MAX_RETRY_AFTER_SECONDS = 86_400
MATCH_FORMS = (
    "None, a path glob such as '/search*', 'METHOD /path-glob' (e.g. 'GET /users/*'), or a"
    " mapping with keys method, path, headers"
)


def is_token(text: object) -> bool:
    """Is `text` an HTTP token (a method, a header name)?"""
    return isinstance(text, str) and bool(text) and set(text) <= _TOKEN_CHARACTERS


def request_path(target: str) -> str:
    """The path of a request target, without its query: `/a?b` -> `/a`, an absolute URL's path
    (`/` when it has none), `*` and a CONNECT authority as they are."""
    if target.startswith("/"):
        return target.partition("?")[0]
    scheme, sep, rest = target.partition("://")
    if sep and scheme.isalpha():
        path = "/" + rest.partition("/")[2] if "/" in rest else "/"
        return path.partition("?")[0]
    return target


def _header_problem(name: object, value: object) -> str | None:
    if not is_token(name):
        return f"header name {name!r} is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)"
    if not isinstance(value, str):
        return f"header {name!r} must have a text value, got {value!r}"
    if any(c in value for c in "\r\n\0"):
        return f"header {name!r} has a line break or NUL in its value {value!r}"
    return None


@dataclass(frozen=True, repr=False)
class HttpMatch:
    """Which requests an HTTP fault acts on; every part given must match.

    `methods`: the request's method is one of them (any when empty). `path`: a glob matched
    against the request's path without its query (`*`: any characters, `/` included; `?`: one
    character; `[...]`: a class; case-sensitive, as sent, percent-escapes undecoded).
    `headers`: (name, value glob) pairs, each matched by at least one of the request's headers
    of that name (names case-insensitive; the glob `*` only asks that the header is present).

    Faults take `match` as a string (`"/search*"`, `"GET /search*"`, `"GET,HEAD /users/*"`),
    a mapping (`{"method": "POST", "path": "/orders", "headers": {"x-tenant": "a*"}}`) or an
    `HttpMatch` (see `HttpMatch.of`).
    """

    methods: tuple[str, ...] = ()
    path: str = "*"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, value: object, kind: str = "match") -> HttpMatch | None:
        """`value` as an HttpMatch (None stays None); FaultError, after `kind`, naming what is
        wrong and what is allowed."""
        if value is None or isinstance(value, HttpMatch):
            return value
        if isinstance(value, str):
            return cls._of_text(value, kind)
        if not isinstance(value, Mapping):
            raise FaultError(f"{kind}: match must be {MATCH_FORMS}; got {value!r}")
        unknown = [key for key in value if key not in MATCH_KEYS]
        if unknown:
            raise FaultError(
                f"{kind}: match has an unknown key {unknown[0]!r}; allowed: {', '.join(MATCH_KEYS)}"
            )
        methods = value.get("method")
        names = [methods] if isinstance(methods, str) else methods
        if names is None:
            names = []
        if not isinstance(names, list | tuple) or not all(is_token(m) for m in names):
            raise FaultError(
                f"{kind}: match method must be an HTTP method such as 'GET', or a list of them,"
                f" got {methods!r}"
            )
        path = value.get("path")
        if path is None:
            path = "*"
        if not isinstance(path, str) or not (path.startswith(("/", "*")) or path == "*"):
            raise FaultError(
                f"{kind}: match path must be a glob starting with '/' or '*' (e.g. '/users/*'),"
                f" got {path!r}"
            )
        if any(c.isspace() for c in path):
            raise FaultError(f"{kind}: match path must have no whitespace, got {path!r}")
        headers = value.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise FaultError(
                f"{kind}: match headers must map header names to value globs"
                f" (e.g. {{'x-tenant': 'a*'}}), got {headers!r}"
            )
        for name, pattern in headers.items():
            problem = _header_problem(name, pattern)
            if problem is not None:
                raise FaultError(f"{kind}: match {problem}")
        return cls(
            methods=tuple(dict.fromkeys(m.upper() for m in names)),
            path=path,
            headers=tuple(sorted((str(n).lower(), str(p)) for n, p in headers.items())),
        )

    @classmethod
    def _of_text(cls, text: str, kind: str) -> HttpMatch:
        parts = text.split()
        if len(parts) == 1 and parts[0].startswith(("/", "*")):
            return cls.of({"path": parts[0]}, kind) or cls()
        # Methods written in a string are upper case, so that a path missing its `/` is
        # reported rather than taken for a method.
        methods = parts[0].split(",") if parts else []
        if len(parts) in (1, 2) and all(is_token(m) and m.isupper() for m in methods):
            spec: dict[str, Any] = {"method": parts[0].split(",")}
            if len(parts) == 2:
                spec["path"] = parts[1]
            return cls.of(spec, kind) or cls()
        raise FaultError(f"{kind}: match must be {MATCH_FORMS}; got {text!r}")

    def matches(self, method: str, target: str, headers: Iterable[tuple[str, str]]) -> bool:
        """Does a request with this method, target (path and query, as sent) and headers
        (name, value) match?"""
        if self.methods and method.upper() not in self.methods:
            return False
        if self.path != "*" and not fnmatch.fnmatchcase(request_path(target), self.path):
            return False
        if not self.headers:
            return True
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name.lower(), []).append(value)
        return all(
            any(fnmatch.fnmatchcase(value, pattern) for value in values.get(name, ()))
            for name, pattern in self.headers
        )

    def to_json(self) -> dict[str, Any]:
        """The mapping form, with only the parts that select something."""
        shown: dict[str, Any] = {}
        if self.methods:
            shown["method"] = self.methods[0] if len(self.methods) == 1 else list(self.methods)
        if self.path != "*":
            shown["path"] = self.path
        if self.headers:
            shown["headers"] = dict(self.headers)
        return shown

    def __repr__(self) -> str:
        return repr(self.to_json())


@dataclass(frozen=True)
class HttpFault(Fault):
    """A fault on whole HTTP/1.1 exchanges, at a proxy (the pytest-chaos engine parses the
    plain-text HTTP passing through it; TLS is out of scope) or in an in-process app wrapped by
    `pytest_chaos.http`'s middleware. Each subclass has a `match` option (see `HttpMatch`)."""

    target_help: ClassVar[str] = "a proxy name or an in-process app's name"
    target_example: ClassVar[str] = "api"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "match", HttpMatch.of(getattr(self, "match", None), self.kind))

    @property
    def selects(self) -> HttpMatch:
        """The requests this fault acts on (all of them when no `match` was given)."""
        found: HttpMatch | None = getattr(self, "match", None)
        return found if found is not None else HttpMatch()

    def options(self) -> dict[str, Any]:
        """Every option but the target, by name, as JSON values (`match` in its mapping form):
        the attributes of the engine's toxic of the same type."""
        shown = super().options()
        if shown.get("match") is not None:
            shown["match"] = shown["match"].to_json()
        if shown.get("headers") is not None:
            shown["headers"] = dict(shown["headers"])
        return shown

    @classmethod
    def from_options(cls, options: Mapping[str, Any], target: str = "-") -> HttpFault:
        """The fault whose `options()` are `options` (how the engine reads its toxics'
        attributes); FaultError naming an unknown or wrong option."""
        known = {f.name for f in fields(cls)} - {"target"}
        for key in options:
            if key not in known:
                allowed = ", ".join(allowed_keywords(cls))
                raise FaultError(f"{cls.kind}: unknown option {key!r}; allowed: {allowed}")
        return cls(target, **options)


def _check_optional_whole(
    kind: str, option: str, value: object, minimum: int, maximum: int, meaning: str
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise FaultError(
            f"{kind}: {option} must be None ({meaning}) or a whole number from {minimum} to"
            f" {maximum}, got {value!r}"
        )


@register
@dataclass(frozen=True)
class HttpError(HttpFault):
    """Answer matching requests with `status` without passing them to the upstream: each with
    `probability` (seeded), only the first `first` matching ones when given. The answer has
    `body` (text; default: a line naming the status) and `headers`, and `Retry-After:
    retry_after` (seconds) when given."""

    status: int = 503
    _: KW_ONLY
    probability: float = field(default=1.0, metadata=PROBABILITY)
    first: int | None = None
    match: HttpMatch | Mapping[str, Any] | str | None = None
    body: str | None = None
    headers: Mapping[str, str] | None = None
    retry_after: int | None = None
    kind = "http_error"
    help = (
        "answer matching HTTP requests with status (200-599) without reaching the upstream, "
        "each with probability 0..1, only the first N with first=N; body (text), headers, "
        "retry_after (seconds). match: 'GET /path-glob' or {method, path, headers}."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        status = self.status
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise FaultError(
                f"{self.kind}: status must be an HTTP status code from 200 to 599, got {status!r}"
            )
        _check_optional_whole(self.kind, "first", self.first, 0, 2**53, "every matching request")
        _check_optional_whole(
            self.kind, "retry_after", self.retry_after, 0, MAX_RETRY_AFTER_SECONDS, "no Retry-After"
        )
        if self.body is not None and not isinstance(self.body, str):
            raise FaultError(f"{self.kind}: body must be None or text (str), got {self.body!r}")
        if self.headers is not None:
            if not isinstance(self.headers, Mapping):
                raise FaultError(
                    f"{self.kind}: headers must map header names to text values"
                    f" (e.g. {{'x-error': 'injected'}}), got {self.headers!r}"
                )
            for name, value in self.headers.items():
                problem = _header_problem(name, value)
                if problem is None and str(name).lower() in FRAMING_HEADERS:
                    problem = f"header {name!r} is set by the answer itself"
                if problem is not None:
                    raise FaultError(f"{self.kind}: {problem}")
            object.__setattr__(self, "headers", dict(self.headers))

    def fires(self, ordinal: int, draw: Callable[[], float]) -> bool:
        """Does the fault answer the `ordinal`-th (from 1) request it matched? `draw()` gives
        the next number of the seeded sequence, in [0, 1); it is called once for each matching
        request within `first` (never when probability is 1 or 0)."""
        if self.first is not None and ordinal > self.first:
            return False
        if self.probability >= 1:
            return True
        return self.probability > 0 and draw() < self.probability

    @property
    def reason(self) -> str:
        """The status's reason phrase ("Service Unavailable"; "" for an unregistered code)."""
        import http

        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def answer_headers(self) -> list[tuple[str, str]]:
        """The answer's headers, framing aside (the HTTP layer adds Content-Length)."""
        given = dict(self.headers or {})
        shown = (
            []
            if any(n.lower() == "content-type" for n in given)
            else [("content-type", "text/plain; charset=utf-8")]
        )
        if self.retry_after is not None:
            shown.append(("retry-after", str(self.retry_after)))
        return shown + list(given.items())

    def answer_body(self) -> bytes:
        """The answer's body: `body` in UTF-8, or a line naming the status and the fault."""
        if self.body is not None:
            return self.body.encode()
        return f"{self.status} {self.reason} (pytest-chaos http_error)\n".encode()


@register
@dataclass(frozen=True)
class HttpDelay(HttpFault):
    """Hold each matching request `ms` milliseconds (+/- `jitter` ms, never below 0) before
    passing it on: the whole request, however it arrived, so its answer comes that much later."""

    ms: int = field(metadata=bound("milliseconds"))
    _: KW_ONLY
    jitter: int = field(default=0, metadata=bound("milliseconds"))
    match: HttpMatch | Mapping[str, Any] | str | None = None
    kind = "http_delay"
    help = (
        "hold each matching HTTP request ms milliseconds (+/- jitter ms) before it reaches the "
        "upstream: whole requests, not chunks. match: 'GET /path-glob' or {method, path, headers}."
    )

    def delay_seconds(self, draw: Callable[[], float]) -> float:
        """This request's delay in seconds: `ms` +/- `jitter` (one `draw()` when jitter is
        set), never negative."""
        delay: float = self.ms
        if self.jitter:
            delay += (2 * draw() - 1) * self.jitter
        return max(0.0, delay / 1000)


@register
@dataclass(frozen=True)
class HttpAbort(HttpFault):
    """Cut the answer to each matching request: the request reaches the upstream; its answer's
    head and first `after_bytes` bytes of body get through, then the connection is reset (TCP
    RST). `after_bytes=0`: nothing of the answer gets through. An answer whose body is no
    longer than `after_bytes` passes whole."""

    _: KW_ONLY
    after_bytes: int = field(default=0, metadata=bound("bytes", maximum=2**53))
    match: HttpMatch | Mapping[str, Any] | str | None = None
    kind = "http_abort"
    help = (
        "let matching HTTP requests reach the upstream, then reset the connection (TCP RST) "
        "after the answer's head and after_bytes bytes of its body (0: nothing gets through). "
        "match: 'GET /path-glob' or {method, path, headers}."
    )
