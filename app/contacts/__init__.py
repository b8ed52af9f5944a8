"""Contacts: how one person is reached on one channel, with the consent that allows it.

This package is the only writer of ``contact`` and ``contact_consent``. Personal data: never
on public endpoints, never in logs.
"""
