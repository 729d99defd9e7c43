"""The ``sim`` wire format: the simulator's venue feed, an ITCH/LOBSTER-like L3 message file.

One gzip CSV per instrument and UTC day, ``sim/<symbol>/<YYYY-MM-DD>.events.csv.gz``, with a
header line and one message per line::

    ts_event,ts_recv,seq,type,order_id,side,price,size

* ``ts_event`` / ``ts_recv``: integer ns since the UNIX epoch (matching engine / capture).
* ``seq``: the venue sequence, +1 per message across the instrument's files.
* ``type``: ``R`` clear book (starts the file's snapshot), ``S`` a resting order of the
  snapshot, ``A`` add, ``D`` delete (whole order), ``E`` execution of a visible resting order
  (``size`` filled; ``side`` is the resting side, so the aggressor is the other one, as LOBSTER),
  ``H`` execution against hidden liquidity (``order_id`` 0, ``side`` the hidden resting side).
* ``price`` / ``size``: decimal strings on the instrument's tick and lot grid.

Every file begins with an ``R`` line and the ``S`` lines of the book at the file's start, so a
book built from any one file is complete from its first line.
"""

from __future__ import annotations

HEADER = "ts_event,ts_recv,seq,type,order_id,side,price,size"
COLUMNS = tuple(HEADER.split(","))
TYPES = "RSADEH"
SIDES = "BA"
FILE_SUFFIX = ".events.csv.gz"
