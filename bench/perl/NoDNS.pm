package NoDNS;
# Loaded with `perl -T -I bench/perl -MNoDNS /usr/bin/qpsmtpd-prefork ...` by bench/run.py:
# Perl qpsmtpd 0.94 looks up every client's PTR through /etc/resolv.conf and ignores -H.
# This makes every Net::DNS query fail at once (as a DNS-less host would), so the benchmark
# sends no packet off the machine and Perl pays no DNS latency (like our -H).
use strict;
no warnings 'redefine';
require Net::DNS::Resolver;
for my $pkg (qw(Net::DNS::Resolver Net::DNS::Resolver::Base)) {
    no strict 'refs';
    *{"${pkg}::send"}   = sub { return undef };
    *{"${pkg}::query"}  = sub { return undef };
    *{"${pkg}::search"} = sub { return undef };
    *{"${pkg}::bgsend"} = sub { return undef };
}
*CORE::GLOBAL::gethostbyaddr = sub { return };
1;
