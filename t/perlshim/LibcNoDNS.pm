package LibcNoDNS;
# The preamble LoopDNS.pm and NoDNS.pm share: `use LibcNoDNS 'NAME';` at the top of a
# shim (loaded with -M before anything else) makes Perl's core gethostbyaddr and
# gethostbyname fail at once (overridden in CORE::GLOBAL before the qpsmtpd modules are
# compiled, so no libc lookup leaves the machine), loads Net::DNS::Resolver for the
# shim to patch, and gives it note(@what): "NAME: blocked @what" on STDERR when
# NODNS_LOG=1.
use strict;
use warnings;

my $who = 'LibcNoDNS';

sub note {
    print STDERR "$who: blocked @_\n" if $ENV{NODNS_LOG};
    return;
}

sub import {
    my (undef, $name) = @_;
    $who = $name if defined $name;
    my $caller = caller;
    no strict 'refs';
    *{"${caller}::_note"} = \&note;
}

BEGIN {
    no warnings 'redefine';
    *CORE::GLOBAL::gethostbyaddr = sub { note('gethostbyaddr'); $? = 1; return; };
    *CORE::GLOBAL::gethostbyname = sub { note('gethostbyname', $_[0]); return; };
}

require Net::DNS;
require Net::DNS::Resolver;

1;
