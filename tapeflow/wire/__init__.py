"""What every runtime shares about raw input, below the venues and the live/replay frameworks.

* :mod:`tapeflow.wire.capture` reads capture files and journals into :class:`CaptureLine` s;
* :mod:`tapeflow.wire.numbers` turns decimal text into exact int64 nanos;
* :mod:`tapeflow.wire.rejects` declares the closed set of reject reasons and builds dead letters;
* :mod:`tapeflow.wire.registry` finds the venue folders (``tapeflow/venues/<venue>/``) and what
  each declares: decoder, verifier, live client, replay adapter.

``tapeflow.venues`` builds on it and on ``tapeflow.live`` / ``tapeflow.replay``; those two
import only this package, never a venue (an import-linter contract keeps it so).
"""
