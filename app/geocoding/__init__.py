"""Placing an address text on the map: an HTTP geocoder (Nominatim- or Photon-compatible, at
``KERBSIDE_GEOCODER_URL``) and the local gazetteer of the city file's street list.

Shared by the channels that receive addresses instead of coordinates: social posts
(``app.social.locate``) and Open311 requests with only an ``address_string``. It knows
nothing of reports or posts: it answers a point, how it was found and how sure it is.
"""
