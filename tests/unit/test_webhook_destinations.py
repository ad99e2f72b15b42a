"""Only public addresses are webhook destinations, in every form an address can take, unless an
administrator allows more."""

from __future__ import annotations

import ipaddress

import pytest

from shared.webhooks.destinations import DestinationRefused, Policy, parse, resolve

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1",
    "fc00::1",
    "::",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert Policy().refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert Policy().refusal(ipaddress.ip_address(address)) is None


def test_an_administrator_allows_loopback_or_networks() -> None:
    loopback = Policy.of(allow_loopback=True, allowed_networks="")
    assert loopback.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert loopback.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert loopback.refusal(ipaddress.ip_address("::1")) is None
    assert loopback.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    networks = Policy.of(allow_loopback=False, allowed_networks="10.20.0.0/16, fd00::/8")
    assert networks.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert networks.refusal(ipaddress.ip_address("fd12::1")) is None
    assert networks.refusal(ipaddress.ip_address("10.21.0.1")) is not None
    assert networks.refusal(ipaddress.ip_address("127.0.0.1")) is not None
    with pytest.raises(ValueError, match="does not appear to be"):
        Policy.of(allow_loopback=False, allowed_networks="not-a-network")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "https://"),
        ("https:///path", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://example.com:99999/", "not a URL"),
        ("https://example.com/" + "a" * 2000, "longer"),
    ],
)
def test_urls_that_cannot_be_endpoints_are_refused(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why):
        parse(url)


async def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    with pytest.raises(DestinationRefused, match="not a public address"):
        await resolve("http://localhost:9/hook", Policy())
    # The decimal form of 127.0.0.1 resolves to it and is refused like it.
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1"):
        await resolve("http://2130706433/hook", Policy())
    allowed = await resolve(
        "http://127.0.0.1:9/hook", Policy.of(allow_loopback=True, allowed_networks="")
    )
    assert (allowed.address, allowed.target.port) == ("127.0.0.1", 9)
    with pytest.raises(DestinationRefused, match="does not resolve"):
        await resolve("https://no-such-host.invalid/", Policy())
