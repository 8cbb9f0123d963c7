"""docker-compose's nginx passes the address it accepted, and only nginx is trusted for it."""

from __future__ import annotations

import ipaddress
import re

import yaml

from tests.support.servers import REPO


def test_nginx_replaces_x_forwarded_for_in_every_proxied_location() -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    locations = re.findall(r"location [^{]+\{([^}]*)\}", conf)
    proxied = [body for body in locations if "proxy_pass" in body]
    assert len(proxied) == 3
    for body in proxied:
        # $proxy_add_x_forwarded_for appends to what the client sent: the client picks.
        assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", body), body
        assert "proxy_add_x_forwarded_for" not in body
        assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme;", body), body


def test_the_replicas_trust_nginx_and_nobody_else() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    nginx_address = compose["services"]["nginx"]["networks"]["default"]["ipv4_address"]
    for name in ("app1", "app2"):
        env = compose["services"][name]["environment"]
        assert env["TRUSTED_PROXIES"] == nginx_address
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    # Both overridable, and the default address lies in the default subnet.
    address = re.fullmatch(r"\$\{NGINX_ADDRESS:-(.+)\}", nginx_address)
    network = re.fullmatch(r"\$\{COMPOSE_SUBNET:-(.+)\}", subnet)
    assert address and network
    assert ipaddress.ip_address(address[1]) in ipaddress.ip_network(network[1])
