package GreylistP0f;

# Loaded into Perl qpsmtpd 0.94 by bench/full_chain.py (perl -T -MGreylistP0f).
# 0.94's greylisting plugin calls $self->is_p0f_match, which 0.94 does not define:
# every check dies (FATAL PLUGIN ERROR) and the message passes without a look at
# the greylisting database. This is the missing method: without a `p0f` argument
# every client is greylisted (the plugin's documented default); with one, none
# (the benchmark does not use p0f).

package Qpsmtpd::Plugin;

sub is_p0f_match {
    my $self = shift;
    return $self->{_args}{p0f} ? 0 : 1;
}

1;
