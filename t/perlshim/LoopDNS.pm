package LoopDNS;
# Load with `perl -I t/perlshim -MLoopDNS ...` before anything else: Perl qpsmtpd
# 0.94's DNS plugins (dnsbl, rhsbl, fcrdns ...) ask the test DNS server on loopback
# instead of /etc/resolv.conf's.  Every Net::DNS::Resolver made afterwards asks only
# $LOOPDNS_SERVER (ip:port, default 127.0.0.1:5353); the libc lookups
# (gethostbyaddr/gethostbyname, which would leave the machine) fail at once (LibcNoDNS.pm, shared with
# NoDNS.pm), so Perl's own PTR lookup of the client finds nothing.
# Set NODNS_LOG=1 to have every blocked libc lookup noted on STDERR.
use strict;
use warnings;
use LibcNoDNS 'LoopDNS';   # the libc lookups fail; Net::DNS::Resolver loaded

my ($HOST, $PORT) = (($ENV{LOOPDNS_SERVER} || '127.0.0.1:5353') =~ /^(\d+\.\d+\.\d+\.\d+):(\d+)$/)
  or die "LoopDNS: LOOPDNS_SERVER must be ip:port\n";

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
