"""Cost from measured throughput and the price of a device-hour.

Prices come from `--price-per-hour`, a pricing file given with `--pricing`, or the editable defaults in
`recipes/pricing.yaml`, matched against the device name (first entry whose `match` text occurs in it). A
CPU is priced per thread (`per: thread`): a run on 2 threads pays for 2, on 16 for 16.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mambapoc.errors import UserError
from mambapoc.resources import default_pricing

PER = ("device", "thread")


def load_pricing(path: Path | None) -> list[dict]:
    path = Path(path) if path else default_pricing()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read pricing file {path}: {e}") from None
    entries = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"pricing file {path}: expected a `devices:` list of {{match, usd_per_hour}}")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "match" not in e or "usd_per_hour" not in e:
            raise UserError(f"pricing file {path}: devices[{i}] needs `match` and `usd_per_hour`")
        if e.get("per", "device") not in PER:
            raise UserError(f"pricing file {path}: devices[{i}].per is one of {', '.join(PER)}")
        price = e["usd_per_hour"]
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 < price < float("inf"):
            raise UserError(f"pricing file {path}: devices[{i}].usd_per_hour must be a positive number")
    return entries


def price_for(device_name: str, pricing_file: str | None, price_per_hour: float | None, threads: int = 1) -> dict:
    """The price of one hour of what a run uses: the device, or for an entry priced `per: thread` (CPUs)
    that price times the `threads` the workers compute with."""
    if price_per_hour is not None:
        return {"device_name": device_name, "price_per_hour_usd": price_per_hour, "source": "--price-per-hour"}
    source = str(pricing_file or default_pricing().name)
    for e in load_pricing(pricing_file):
        if str(e["match"]).lower() in device_name.lower():
            label = e.get("label", e["match"])
            if e.get("per", "device") == "thread":
                return {"device_name": device_name, "price_per_hour_usd": float(e["usd_per_hour"]) * threads,
                        "source": f"{source}: {label}, ${float(e['usd_per_hour']):g} per thread-hour x {threads} "
                                  f"thread{'s' if threads != 1 else ''}"}
            return {"device_name": device_name, "price_per_hour_usd": float(e["usd_per_hour"]),
                    "source": f"{source}: {label}"}
    raise UserError(f"no price for device {device_name!r} in {source}: add an entry or pass --price-per-hour")
