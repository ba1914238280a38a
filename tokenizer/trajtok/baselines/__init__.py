"""The other video tokenizers compared against TrajTok: CoordTok (``coordtok``) and its trainer (``coordtok_train``)."""
