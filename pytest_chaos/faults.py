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
import inspect
import math
import typing
from collections.abc import Mapping
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
        parts.append(f"{f.name}={_default(f)!r}" if f.kw_only else f.name)
    if getattr(cls, "takes_any_keyword", None):
        parts.append("**attributes")
    return f"{cls.kind}({', '.join(parts)})"


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
    missing = [name for name in required if name not in values]
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
            params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD))
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
