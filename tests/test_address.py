"""Address keys (geo/address.py): one place, many spellings; neighbours stay apart."""

from __future__ import annotations

import pytest

from geo.address import AddressKey, address_key, lock_key


@pytest.mark.parametrize(
    "text",
    [
        "16815 W VANOWEN ST, 91406",
        "16815 West Vanowen Street",
        "16815 w. vanowen st.",
        "16815 W  VANOWEN   ST apt 4",
        "16815 W VANOWEN ST #12",
        "16815 W Vanowen St, Los Angeles, CA 91406-1234",
        "16815 W VANOWEN ST 91406",
        "16815 W VANOWEN ST Suite 200",
    ],
)
def test_spellings_of_one_address_share_a_key(text: str) -> None:
    assert address_key(text) == AddressKey("16815 W VANOWEN ST", "VANOWEN ST")


@pytest.mark.parametrize(
    ("text", "address", "street"),
    [
        ("132 S Westmoreland Avenue", "132 S WESTMORELAND AVE", "WESTMORELAND AVE"),
        ("132 South Westmoreland Av", "132 S WESTMORELAND AVE", "WESTMORELAND AVE"),
        ("969 W Colorado Boulevard", "969 W COLORADO BLVD", "COLORADO BLVD"),
        ("123 First Avenue", "123 1ST AVE", "1ST AVE"),
        ("12 1/2 Main St", "12 1/2 MAIN ST", "MAIN ST"),
        ("12B Main St", "12B MAIN ST", "MAIN ST"),
        ("100-102 N Main St.", "100-102 N MAIN ST", "MAIN ST"),
        ("O'Farrell Street", "OFARRELL ST", "OFARRELL ST"),
        ("W 66th Street", "W 66TH ST", "66TH ST"),
        ("Saint Louis Ave", "ST LOUIS AVE", "ST LOUIS AVE"),
        ("Northeast Parkway Drive", "NE PKWY DR", "PKWY DR"),
    ],
)
def test_normalisation(text: str, address: str, street: str) -> None:
    assert address_key(text) == AddressKey(address, street)


@pytest.mark.parametrize(
    "text",
    [
        "CRENSHAW BLVD AT COLISEUM PL, 90008",
        "Coliseum Place & Crenshaw Boulevard",
        "crenshaw blvd and coliseum pl",
        "Crenshaw Blvd / Coliseum Pl",
    ],
)
def test_an_intersection_is_one_key_in_either_order(text: str) -> None:
    key = "COLISEUM PL & CRENSHAW BLVD"
    assert address_key(text) == AddressKey(key, key)


def test_neighbours_share_the_street_only() -> None:
    a, b = address_key("16815 W VANOWEN ST"), address_key("16817 W VANOWEN ST")
    assert a is not None
    assert b is not None
    assert a.address != b.address
    assert a.street == b.street
    # The directional tells two houses apart, not two streets.
    east = address_key("100 E 66TH ST")
    west = address_key("100 W 66TH ST")
    assert east is not None
    assert west is not None
    assert east.address != west.address
    assert east.street == west.street


@pytest.mark.parametrize("text", [None, "", "   ", "91406", ", 91406", "#4", "123"])
def test_texts_without_a_street_have_no_key(text: str | None) -> None:
    assert address_key(text) is None


def test_lock_keys_are_stable_signed_32_bit() -> None:
    key = lock_key("VANOWEN ST")
    assert key == lock_key("VANOWEN ST")
    assert key != lock_key("VANOWEN AVE")
    assert -(2**31) <= key < 2**31
    values = {lock_key(f"STREET {i}") for i in range(2000)}
    assert min(values) < 0 < max(values)
