// The benchmark's "no reverse DNS" (qpsmtpd -H, Perl's NoDNS.pm): Haraka looks up
// every client's PTR unless a lookup_rdns hook answers; this one answers at once.
exports.register = function () {
    this.register_hook('lookup_rdns', 'no_lookup')
}

exports.no_lookup = (next) => next(OK, 'client.example.test')
