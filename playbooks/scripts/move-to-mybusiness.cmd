@echo off
rem ===========================================================================
rem Moves the user accounts and client computers into the organizational
rem units SBS 2003 Setup created, so that SBS's group policies and its
rem management console (Server Management > Users, Client Computers) cover
rem them (KB 884453: SBS 2003 in an existing domain does not move existing
rem objects itself):
rem   users with a mailbox from CN=Users to
rem     OU=SBSUsers,OU=Users,OU=MyBusiness (built-in accounts such as
rem     Administrator are marked isCriticalSystemObject and stay);
rem   computers from CN=Computers to
rem     OU=SBSComputers,OU=Computers,OU=MyBusiness.
rem Users without a mailbox, service accounts and objects in other OUs stay
rem where they are: verify in rehearsal that the list this step prints is the
rem list of the customer's people and PCs.
rem Each move is recorded in C:\mig\backup\mybusiness-moved.txt (new DN and
rem old parent, tab-separated) before it is made: "undo" (the step's rollback)
rem moves exactly those objects back. A second run finds only what is left.
rem Runs directly on new-sbs. Copies itself to C:\mig\bin for the rollback.
rem The server's name and the domain's DN come from C:\mig\bin\customer.cmd
rem (the step customer-settings); PowerShell reads them from the environment.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set BACKUP=C:\mig\backup
if not exist "%BACKUP%" mkdir "%BACKUP%"
if /i not "%~f0"=="C:\mig\bin\move-to-mybusiness.cmd" copy /y "%~f0" C:\mig\bin\move-to-mybusiness.cmd >nul
if /i "%~1"=="undo" goto undo

powershell -NoProfile -NonInteractive -Command "$tab = [char]9; $d = $env:MIG_DN; $srv = 'LDAP://' + $env:MIG_NEW + '/'; $jobs = @(@('CN=Users,' + $d, '(&(objectCategory=person)(objectClass=user)(homeMDB=*)(!(isCriticalSystemObject=TRUE)))', 'OU=SBSUsers,OU=Users,OU=MyBusiness,' + $d), @('CN=Computers,' + $d, '(objectCategory=computer)', 'OU=SBSComputers,OU=Computers,OU=MyBusiness,' + $d)); $n = 0; foreach ($j in $jobs) { $to = [ADSI]($srv + $j[2]); if (-not $to.Properties['distinguishedName'].Value) { Write-Output ('missing ' + $j[2] + ': did SBS Setup finish?'); exit 1 }; $s = New-Object DirectoryServices.DirectorySearcher([ADSI]($srv + $j[0]), $j[1]); $s.SearchScope = 'OneLevel'; $s.PageSize = 500; foreach ($r in @($s.FindAll())) { $o = $r.GetDirectoryEntry(); $name = [string]$o.Properties['name'].Value; $newDn = 'CN=' + $name + ',' + $j[2]; Add-Content -Path 'C:\mig\backup\mybusiness-moved.txt' -Value ($newDn + $tab + $j[0]); $o.MoveTo($to); Write-Output ('moved ' + $name + ' to ' + $j[2]); $n++ } }; Write-Output ([string]$n + ' object(s) moved')"
exit /b %errorlevel%

:undo
if not exist "%BACKUP%\mybusiness-moved.txt" (
    echo Nothing to undo: %BACKUP%\mybusiness-moved.txt does not exist.
    exit /b 0
)
powershell -NoProfile -NonInteractive -Command "$srv = 'LDAP://' + $env:MIG_NEW + '/'; foreach ($l in Get-Content 'C:\mig\backup\mybusiness-moved.txt') { $p = $l.Split([char]9); try { $o = [ADSI]($srv + $p[0]); $o.MoveTo([ADSI]($srv + $p[1])); Write-Output ('moved back ' + $p[0]) } catch { Write-Output ('not found (already back?) ' + $p[0]) } }"
exit /b %errorlevel%
