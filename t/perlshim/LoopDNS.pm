package LoopDNS;
# Load with `perl -I t/perlshim -MLoopDNS ...` before anything else: Perl qpsmtpd
# 0.94's DNS plugins (dnsbl, rhsbl, fcrdns ...) ask the test DNS server on loopback
# instead of /etc/resolv.conf's.  Every Net::DNS::Resolver made afterwards asks only
# $LOOPDNS_SERVER (ip:port, default 127.0.0.1:5353); the libc lookups
# (gethostbyaddr/gethostbyname, which would leave the machine) fail at once, as in
# NoDNS.pm, so Perl's own PTR lookup of the client finds nothing.
# Set NODNS_LOG=1 to have every blocked libc lookup noted on STDERR.
use strict;
use warnings;

my ($HOST, $PORT) = (($ENV{LOOPDNS_SERVER} || '127.0.0.1:5353') =~ /^(\d+\.\d+\.\d+\.\d+):(\d+)$/)
  or die "LoopDNS: LOOPDNS_SERVER must be ip:port\n";

sub _note {
    print STDERR "LoopDNS: blocked @_\n" if $ENV{NODNS_LOG};
    return;
}

BEGIN {
    no warnings 'redefine';
    *CORE::GLOBAL::gethostbyaddr = sub { _note('gethostbyaddr'); $? = 1; return; };
    *CORE::GLOBAL::gethostbyname = sub { _note('gethostbyname', $_[0]); return; };
}

require Net::DNS;
require Net::DNS::Resolver;

{
    no strict 'refs';
    no warnings 'redefine';
    my $new = Net::DNS::Resolver->can('new');
    *{'Net::DNS::Resolver::new'} = sub {
        my $resolver = $new->(@_);
        $resolver->nameservers($HOST);
        $resolver->port($PORT);
        return $resolver;
    };
}

1;
