"""``npgd-serve``: the MRD streaming server. ``transport`` (sockets, threads, idle and hang-up
detection), ``protocol`` (message framing, NUL-terminated strings), ``session`` (one client's
stream to images, the shared reconstructors and their slots), ``config`` (what a client may ask
for)."""
