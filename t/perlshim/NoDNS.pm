package NoDNS;
# Load with `perl -I t/perlshim -MNoDNS ...` before anything else: Perl qpsmtpd
# 0.94 must not send a single DNS packet off this machine (/etc/resolv.conf points
# off it and qpsmtpd-forkserver ignores -H).  Every resolver entry point fails at
# once: the core gethostbyaddr/gethostbyname (overridden in CORE::GLOBAL before
# the qpsmtpd modules are compiled) and Net::DNS::Resolver's send/query/search/
# bgsend/axfr (answered with "no answer", errorstring NXDOMAIN-like).
# Set NODNS_LOG=1 to have every blocked lookup noted on STDERR.
use strict;
use warnings;
use LibcNoDNS 'NoDNS';     # the libc lookups fail; Net::DNS::Resolver loaded; _note

{
    no strict 'refs';
    no warnings 'redefine';
    for my $pkg ('Net::DNS::Resolver', 'Net::DNS::Resolver::Base') {
        for my $method (qw(send query search bgsend axfr axfr_start)) {
            *{"${pkg}::$method"} = sub {
                my ($self, @args) = @_;
                _note("Net::DNS::Resolver->$method", @args);
                $self->{errorstring} = 'NXDOMAIN' if ref $self;
                return;
            };
        }
        *{"${pkg}::bgisready"} = sub { 1 };
        *{"${pkg}::bgread"}    = sub { return };
    }
}

1;
