"""``npgd-serve``: the MRD streaming server. ``transport`` (sockets, framing, threads),
``session`` (one client's stream to images), ``config`` (what a client may ask for)."""
